"""`RedisCache`: the response cache in Redis, shared by every kernel, process and worker."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from .._http import Response
from .._redact import redact_url
from ._best_effort import cache_guards
from ._codec import decode_response, encode_response, storage_key
from ._redis_conn import RedisConnector, glob_escape

#: What `storage_key` makes, as a SCAN pattern: clearing endpoint ``a`` leaves ``a:b``'s keys.
_KEY_GLOB = "[0-9a-f]" * 64


class RedisCache:
    """A `Cache` in Redis: every orchestrator using the same URL and prefix shares entries.

    Redis expires the entries itself (``SET ... PX``), so nothing is ever swept. `get` and
    `set` are coroutines on ``redis.asyncio``, with one client per running event loop (see
    `RedisConnector`); `clear` is synchronous, like ``clear_cache()``, and uses a
    synchronous client. Each client has up to 50 connections (``?max_connections=`` in the
    URL); more concurrent lookups wait for one. Replies time out after 5 s
    (``?socket_timeout=``).

    The cache is best-effort: when Redis is down or times out, a get counts as a miss and
    a set is skipped, so the call still reaches its API. The cache is then left alone for
    10 s before one call tries it again, so a Redis that hangs costs one socket timeout,
    not one per call; a warning naming the URL (without its password) is logged at most
    once a minute (see `BestEffort`). `clear` still raises.

    `url` is a ``redis://`` or ``rediss://`` URL as redis-py reads it; its ``prefix`` query
    parameter (or the `prefix` argument) starts every key, default ``"apiorch"``. Keys are
    ``{prefix}:cache:{namespace}:{key}``, with `key` stored as a `storage_key` string;
    values must be `Response` objects, stored without their ``Set-Cookie`` headers.

    Example::

        cache = RedisCache("redis://127.0.0.1:6379/0?prefix=myproj")
        orchestrator = APIOrchestrator(config, cache=cache)

    Raises:
        ConfigError: a malformed URL, or redis-py is not installed.
    """

    def __init__(self, url: str, *, prefix: str | None = None) -> None:
        self._redis = RedisConnector(url, "cache", prefix)
        self.prefix = self._redis.prefix
        from redis.exceptions import RedisError  # importable: the connector checked

        self._get_guard, self._set_guard = cache_guards(
            f"cache {redact_url(self._redis.url)!r} (prefix {self.prefix!r})",
            (RedisError, OSError),
        )

    def _key(self, namespace: str, key: Hashable) -> str:
        return f"{self.prefix}:cache:{namespace}:{storage_key(key)}"

    async def get(self, namespace: str, key: Hashable) -> Response | None:
        if not self._get_guard.usable():  # resting after a failure
            return None
        with self._get_guard:
            client = await self._redis.client()
            data = await client.get(self._key(namespace, key))
            return decode_response(data) if data is not None else None
        return None

    async def set(self, namespace: str, key: Hashable, value: Any, ttl: float) -> None:
        if not isinstance(value, Response):
            raise TypeError(f"RedisCache stores Response objects, got {type(value).__name__}")
        ttl_ms = max(1, round(ttl * 1000))
        if not self._set_guard.usable():
            return
        with self._set_guard:
            client = await self._redis.client()
            await client.set(self._key(namespace, key), encode_response(value), px=ttl_ms)

    async def aclose(self) -> None:
        """Close the running loop's client and the sync one; the next call opens new ones."""
        await self._redis.aclose()

    def clear(self, namespace: str | None = None) -> None:
        """Delete `namespace`'s entries, or every entry under this prefix (SCAN + UNLINK)."""
        pattern = f"{glob_escape(self.prefix)}:cache:"
        pattern += "*" if namespace is None else f"{glob_escape(namespace)}:{_KEY_GLOB}"
        self._redis.unlink_matching(pattern)

    def __repr__(self) -> str:
        return f"RedisCache({redact_url(self._redis.url)!r}, prefix={self.prefix!r})"

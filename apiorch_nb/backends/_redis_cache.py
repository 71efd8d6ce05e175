"""`RedisCache`: the response cache in Redis, shared by every kernel, process and worker."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncGenerator, Hashable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._http import Response
from .._redact import redact_url
from ..errors import ConfigError
from ._codec import decode_response, encode_response, storage_key

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: Start of every key this cache writes: ``{prefix}:cache:{namespace}:{key}``.
DEFAULT_PREFIX = "apiorch"
#: Keys deleted per UNLINK while clearing.
_UNLINK_BATCH = 500
#: Connections per event loop, and seconds to wait for a reply, unless the URL says.
_POOL_DEFAULTS: dict[str, Any] = {
    "max_connections": 50,
    "socket_connect_timeout": 5.0,
    "socket_timeout": 5.0,
}
#: What `storage_key` makes, as a SCAN pattern: clearing endpoint ``a`` leaves ``a:b``'s keys.
_KEY_GLOB = "[0-9a-f]" * 64


class RedisCache:
    """A `Cache` in Redis: every orchestrator using the same URL and prefix shares entries.

    Redis expires the entries itself (``SET ... PX``), so nothing is ever swept. `get` and
    `set` are coroutines on ``redis.asyncio``; `clear` is synchronous, like
    ``clear_cache()``, and uses a short-lived synchronous client.

    A ``redis.asyncio`` client belongs to the event loop it first ran on, while one
    orchestrator may run on a notebook's loop, then inside ``asyncio.run`` or a Dask worker
    thread's loop. So there is one client per running loop, never shared across loops, and
    each is closed when its loop shuts down (as ``asyncio.run`` does). Each client has up
    to 50 connections (``?max_connections=`` in the URL); more concurrent lookups wait for
    one. Replies time out after 5 s (``?socket_timeout=``), and the call fails.

    `url` is a ``redis://`` or ``rediss://`` URL as redis-py reads it; its ``prefix`` query
    parameter (or the `prefix` argument) starts every key, default `DEFAULT_PREFIX`. Keys
    are stored as `storage_key` strings; values must be `Response` objects, stored without
    their ``Set-Cookie`` headers.

    Example::

        cache = RedisCache("redis://127.0.0.1:6379/0?prefix=myproj")
        orchestrator = APIOrchestrator(config, cache=cache)

    Raises:
        ConfigError: a malformed URL, or redis-py is not installed.
    """

    def __init__(self, url: str, *, prefix: str | None = None) -> None:
        redis_url, url_prefix = _split_url(url)
        if prefix is not None and not prefix:
            raise ConfigError("cache: prefix must be a non-empty string")
        if prefix is not None and url_prefix is not None and prefix != url_prefix:
            raise ConfigError(
                f"cache: prefix {prefix!r} given, but the URL {redact_url(url)!r} "
                f"says {url_prefix!r}; give one"
            )
        self.prefix = prefix or url_prefix or DEFAULT_PREFIX
        self._url = redis_url
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()  # Dask worker threads may each add their loop's client

    def _key(self, namespace: str, key: Hashable) -> str:
        return f"{self.prefix}:cache:{namespace}:{storage_key(key)}"

    async def get(self, namespace: str, key: Hashable) -> Response | None:
        entry = self._clients.get(asyncio.get_running_loop())
        client = entry.client if entry is not None else await self._open_client()
        data = await client.get(self._key(namespace, key))
        return decode_response(data) if data is not None else None

    async def set(self, namespace: str, key: Hashable, value: Any, ttl: float) -> None:
        if not isinstance(value, Response):
            raise TypeError(f"RedisCache stores Response objects, got {type(value).__name__}")
        entry = self._clients.get(asyncio.get_running_loop())
        client = entry.client if entry is not None else await self._open_client()
        ttl_ms = max(1, round(ttl * 1000))
        await client.set(self._key(namespace, key), encode_response(value), px=ttl_ms)

    async def _open_client(self) -> Redis:
        from redis.asyncio import BlockingConnectionPool, Redis

        loop = asyncio.get_running_loop()
        # A PARALLEL run asks for every hit at once, outside max_concurrent: a blocking pool
        # queues them on a bounded set of connections instead of failing past the bound.
        # The URL's own max_connections or timeouts win over these defaults.
        pool = BlockingConnectionPool.from_url(self._url, **_POOL_DEFAULTS)
        client = Redis.from_pool(pool)
        keeper = _close_on_shutdown(client)
        with self._lock:
            for old in [lp for lp in self._clients if lp.is_closed()]:
                del self._clients[old]  # closed without shutting its async generators down
            self._clients[loop] = _LoopClient(client, keeper)
        # Parked on `yield`, the keeper is finalised by the loop's shutdown_asyncgens (which
        # asyncio.run calls), and that closes this loop's client on this loop.
        await keeper.__anext__()
        return client

    async def aclose(self) -> None:
        """Close the running loop's client; the next call opens a new one."""
        with self._lock:
            entry = self._clients.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.keeper.aclose()

    def clear(self, namespace: str | None = None) -> None:
        """Delete `namespace`'s entries, or every entry under this prefix (SCAN + UNLINK)."""
        import redis

        pattern = f"{_glob_escape(self.prefix)}:cache:"
        pattern += "*" if namespace is None else f"{_glob_escape(namespace)}:{_KEY_GLOB}"
        client = redis.Redis.from_url(self._url, **_POOL_DEFAULTS)
        try:
            batch: list[bytes] = []
            for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= _UNLINK_BATCH:
                    client.unlink(*batch)
                    batch.clear()
            if batch:
                client.unlink(*batch)
        finally:
            client.close()

    def __repr__(self) -> str:
        return f"RedisCache({redact_url(self._url)!r}, prefix={self.prefix!r})"


class _LoopClient:
    """One loop's client and the async generator that closes it at the loop's shutdown."""

    __slots__ = ("client", "keeper")

    def __init__(self, client: Redis, keeper: AsyncGenerator[None, None]) -> None:
        self.client = client
        self.keeper = keeper


async def _close_on_shutdown(client: Redis) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()


def _split_url(url: str) -> tuple[str, str | None]:
    """`url` without its ``prefix`` query parameter, and that prefix (None if absent).

    Raises:
        ConfigError: not a redis URL redis-py can read, no host, a database that is not
            a number, an empty or repeated prefix, or redis-py missing.
    """
    shown = redact_url(url)
    try:
        import redis  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"cache: {shown!r} needs redis-py; install it with `pip install apiorch-nb[redis]`"
        ) from exc
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"cache: {shown!r} is not a redis:// or rediss:// URL")
    if not parts.hostname:
        raise ConfigError(f"cache: {shown!r} names no host; e.g. redis://127.0.0.1:6379/0")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ConfigError(f"cache: {shown!r}: the database must be a number, got {db!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [v for k, v in query if k == "prefix"]
    if any(not p for p in prefixes) or len(prefixes) > 1:
        raise ConfigError(f"cache: {shown!r}: give one non-empty prefix=..., got {prefixes}")
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    redis_url = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment))
    try:
        from redis import ConnectionPool

        # Building a pool and a connection object (neither connects) checks the options.
        pool = ConnectionPool.from_url(redis_url)
        pool.connection_class(**pool.connection_kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cache: {shown!r} is not a valid redis URL: {exc}") from exc
    return redis_url, prefixes[0] if prefixes else None


def _glob_escape(text: str) -> str:
    """`text` as a SCAN MATCH pattern that matches only itself."""
    return "".join("\\" + c if c in "*?[]\\^" else c for c in text)

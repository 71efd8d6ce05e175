"""`RedisConnector`: the redis-py clients one shared-state backend uses, per event loop.

A ``redis.asyncio`` client belongs to the loop it first ran on, while one orchestrator may
run on a notebook's loop, then inside ``asyncio.run`` or a Dask worker thread's loop. So
the connector keeps one async client per running loop (weakly keyed by the loop), each
closed when its loop shuts down, plus one lazily made synchronous client for the
synchronous methods (``try_acquire``, ``get_status``, ``reset``, ...). The URL's
``prefix`` query parameter is ours, so it is taken out before redis-py reads the URL.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._redact import redact_url
from ..errors import ConfigError

if TYPE_CHECKING:
    import redis
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript, Script

#: Start of every key the shared-state backends write: ``{prefix}:rl:...``, ``{prefix}:cb:...``.
DEFAULT_PREFIX = "apiorch"


class RedisConnector:
    """The clients for one ``redis://`` URL: async per running loop, one sync.

    Raises:
        ConfigError: a malformed URL, or redis-py is not installed.
    """

    __slots__ = ("_clients", "_lock", "_sync", "_sync_scripts", "prefix", "url", "what")

    def __init__(self, url: str, what: str, prefix: str | None = None) -> None:
        self.what = what
        self.url, url_prefix = split_url(url, what)
        if prefix is not None and url_prefix is not None and prefix != url_prefix:
            raise ConfigError(
                f"{what}: prefix {prefix!r} given, but the URL {redact_url(url)!r} says "
                f"{url_prefix!r}; give one"
            )
        if prefix is not None and (not isinstance(prefix, str) or not prefix):
            raise ConfigError(f"{what}: prefix must be a non-empty string, got {prefix!r}")
        self.prefix = prefix or url_prefix or DEFAULT_PREFIX
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()  # Dask worker threads may each add their loop's client
        self._sync: redis.Redis | None = None
        self._sync_scripts: dict[str, Script] = {}

    async def script(self, lua: str) -> AsyncScript:
        """`lua` bound to the running loop's client (EVALSHA, loaded again on NOSCRIPT)."""
        entry = self._clients.get(asyncio.get_running_loop())
        if entry is None:
            entry = await self._open()
        script = entry.scripts.get(lua)
        if script is None:
            script = entry.scripts[lua] = entry.client.register_script(lua)
        return script

    async def client(self) -> Redis:
        """The running loop's async client, opened on first use."""
        entry = self._clients.get(asyncio.get_running_loop())
        return (entry if entry is not None else await self._open()).client

    def sync_client(self) -> redis.Redis:
        """The synchronous client (a connection pool, safe across threads)."""
        if self._sync is None:
            import redis

            self._sync = redis.Redis.from_url(self.url)
        return self._sync

    def sync_script(self, lua: str) -> Script:
        script = self._sync_scripts.get(lua)
        if script is None:
            script = self._sync_scripts[lua] = self.sync_client().register_script(lua)
        return script

    async def aclose(self) -> None:
        """Close the running loop's client and the sync client; later calls reopen them."""
        with self._lock:
            entry = self._clients.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.keeper.aclose()
        self.close_sync()

    def close_sync(self) -> None:
        sync, self._sync = self._sync, None
        self._sync_scripts.clear()
        if sync is not None:
            sync.close()

    async def _open(self) -> _LoopClient:
        from redis.asyncio import Redis

        loop = asyncio.get_running_loop()
        client = Redis.from_url(self.url)
        keeper = _close_on_shutdown(client)
        entry = _LoopClient(client, keeper)
        with self._lock:
            for old in [lp for lp in self._clients if lp.is_closed()]:
                del self._clients[old]  # closed without shutting its async generators down
            self._clients[loop] = entry
        # Parked on `yield`, the keeper is finalised by the loop's shutdown_asyncgens (which
        # asyncio.run calls), and that closes this loop's client on this loop.
        await keeper.__anext__()
        return entry


class _LoopClient:
    """One loop's client, its registered scripts, and the generator closing it at shutdown."""

    __slots__ = ("client", "keeper", "scripts")

    def __init__(self, client: Redis, keeper: AsyncGenerator[None, None]) -> None:
        self.client = client
        self.keeper = keeper
        self.scripts: dict[str, AsyncScript] = {}


async def _close_on_shutdown(client: Redis) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()


def split_url(url: str, what: str) -> tuple[str, str | None]:
    """`url` without its ``prefix`` query parameter, and that prefix (None if absent).

    Raises:
        ConfigError: not a redis URL redis-py can read, no host, a database that is not
            a number, an empty or repeated prefix, or redis-py missing.
    """
    shown = redact_url(url) if isinstance(url, str) else repr(url)
    try:
        from redis.connection import Connection, parse_url
    except ImportError as exc:
        raise ConfigError(
            f"{what}: {shown!r} needs redis-py; install it with `pip install apiorch-nb[redis]`"
        ) from exc
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"{what}: {shown!r} is not a redis:// or rediss:// URL")
    if not parts.hostname:
        raise ConfigError(f"{what}: {shown!r} names no host; e.g. redis://127.0.0.1:6379/0")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ConfigError(f"{what}: {shown!r}: the database must be a number, got {db!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [v for k, v in query if k == "prefix"]
    if any(not p for p in prefixes) or len(prefixes) > 1:
        raise ConfigError(f"{what}: {shown!r}: give one non-empty prefix=..., got {prefixes}")
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    redis_url = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment))
    try:
        kwargs = parse_url(redis_url)
        # Building a connection object (it does not connect) checks the query's options.
        kwargs.pop("connection_class", Connection)(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what}: {shown!r} is not a valid redis URL: {exc}") from exc
    return redis_url, prefixes[0] if prefixes else None


def glob_escape(text: str) -> str:
    """`text` as a SCAN MATCH pattern that matches only itself."""
    return "".join("\\" + c if c in "*?[]\\^" else c for c in text)

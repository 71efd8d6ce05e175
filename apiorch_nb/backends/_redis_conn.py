"""`RedisConnector`: the redis-py clients one Redis backend uses, per event loop.

A ``redis.asyncio`` client belongs to the loop it first ran on, while one orchestrator may
run on a notebook's loop, then inside ``asyncio.run`` or a Dask worker thread's loop. So
the connector keeps one async client per running loop (weakly keyed by the loop), each
closed when its loop shuts down, plus one lazily made synchronous client for the
synchronous methods (``clear``, ``try_acquire``, ``get_status``, ``reset``, ...). The URL's
``prefix`` query parameter is ours, so it is taken out before redis-py reads the URL.

Every client sits on a blocking pool of `POOL_DEFAULTS` connections: a PARALLEL run asks
for every cache hit at once, outside ``max_concurrent``, and redis-py's default pool fails
past its bound (``MaxConnectionsError`` at 2,000 concurrent hits) where a blocking one
queues the surplus on the connections it has.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._redact import redact_url
from .._shutdown import close_at_shutdown
from ..errors import ConfigError

if TYPE_CHECKING:
    import redis
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript, Script

logger = logging.getLogger("apiorch_nb")

#: Lua that sets ``now`` to Redis ``TIME`` in microseconds, the one clock every process
#: shares; the first lines of every script that reads the time.
LUA_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

#: Start of every key the Redis backends write: ``{prefix}:cache:...``, ``{prefix}:rl:...``,
#: ``{prefix}:cb:...``.
DEFAULT_PREFIX = "apiorch"
#: Connections per client, and seconds to connect or wait for a reply, unless the URL says
#: (``?max_connections=``, ``?socket_timeout=``, ...).
POOL_DEFAULTS: dict[str, Any] = {
    "max_connections": 50,
    "socket_connect_timeout": 5.0,
    "socket_timeout": 5.0,
}
#: Keys deleted per UNLINK by `RedisConnector.unlink_matching`.
_UNLINK_BATCH = 500


class RedisConnector:
    """The clients for one ``redis://`` URL: async per running loop, one sync.

    `what` (``"cache"``, ``"limiter"``, ...) starts every error message. The connector
    also owns its backend's background writes (`background_script`) and ids (`new_id`).

    Raises:
        ConfigError: a malformed URL or prefix, or redis-py is not installed.
    """

    __slots__ = (
        "_clients",
        "_lock",
        "_serial",
        "_sync",
        "_sync_scripts",
        "_token",
        "prefix",
        "tasks",
        "url",
    )

    def __init__(self, url: str, what: str, prefix: str | None = None) -> None:
        self.url, url_prefix = split_url(url, what)
        if prefix is not None and (not isinstance(prefix, str) or not prefix):
            raise ConfigError(f"{what}: prefix must be a non-empty string, got {prefix!r}")
        if prefix is not None and url_prefix is not None and prefix != url_prefix:
            raise ConfigError(
                f"{what}: prefix {prefix!r} given, but the URL {redact_url(url)!r} says "
                f"{url_prefix!r}; give one"
            )
        self.prefix = prefix or url_prefix or DEFAULT_PREFIX
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()  # Dask worker threads may each add their loop's client
        self._sync: redis.Redis | None = None
        self._sync_scripts: dict[str, Script] = {}
        self._token = os.urandom(6).hex()  # ids unique across processes
        self._serial = itertools.count(1)
        #: background writes in flight (`background_script`); `aclose` waits for them
        self.tasks: set[asyncio.Task[None]] = set()

    def new_id(self) -> str:
        """An id no other call, connector or process hands out (a member, a lease token)."""
        return f"{self._token}:{next(self._serial)}"

    async def script(self, lua: str) -> AsyncScript:
        """`lua` bound to the running loop's client (EVALSHA, loaded again on NOSCRIPT)."""
        entry = await self._entry()
        script = entry.scripts.get(lua)
        if script is None:
            script = entry.scripts[lua] = entry.client.register_script(lua)
        return script

    async def client(self) -> Redis:
        """The running loop's async client, opened on first use."""
        return (await self._entry()).client

    async def _entry(self) -> _LoopClient:
        entry = self._clients.get(asyncio.get_running_loop())
        return entry if entry is not None else await self._open()

    def sync_client(self) -> redis.Redis:
        """The synchronous client (a connection pool, safe across threads)."""
        if self._sync is None:
            import redis

            self._sync = redis.Redis.from_pool(
                redis.BlockingConnectionPool.from_url(self.url, **POOL_DEFAULTS)
            )
        return self._sync

    def sync_script(self, lua: str) -> Script:
        script = self._sync_scripts.get(lua)
        if script is None:
            script = self._sync_scripts[lua] = self.sync_client().register_script(lua)
        return script

    async def shielded_script(
        self, lua: str, keys: list[str], args: list[Any], undo: Callable[[Any], None]
    ) -> Any:
        """Run `lua`; if the caller is cancelled meanwhile, `undo(reply)` once the reply lands.

        The command is shielded: cut off mid-flight, nobody would know whether Redis did
        it (admitted, took a lease), and only its reply says what there is to undo.
        """
        script = await self.script(lua)
        call = asyncio.ensure_future(script(keys=keys, args=args))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            call.add_done_callback(lambda done: _undo(done, undo))
            raise

    def background_script(
        self,
        lua: str,
        keys: list[str],
        args: list[Any],
        what: str,
        then: Callable[[Any], None],
    ) -> None:
        """Run `lua` in a task on the running loop (at once through the sync client if none).

        A failure is logged as a warning, ``"{what} ({error})"``; then `then` gets the
        reply, or None if it failed. A task cancelled before it landed (``asyncio.run``
        cancels every task at shutdown, maybe before this one began) runs the script
        through the sync client instead, without `then`: the scripts are idempotent, and
        a write left undone would hold capacity or a lease in every process until its TTL.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            then(self._run_sync(lua, keys, args, what))
            return
        task = loop.create_task(self._run_async(lua, keys, args, what, then))
        self.tasks.add(task)
        task.add_done_callback(lambda done: self._landed(done, lua, keys, args, what))

    async def _run_async(
        self,
        lua: str,
        keys: list[str],
        args: list[Any],
        what: str,
        then: Callable[[Any], None],
    ) -> None:
        try:
            script = await self.script(lua)
            reply = await script(keys=keys, args=args)
        except Exception as exc:  # the Redis connection failed
            logger.warning("%s (%s)", what, exc)
            reply = None
        then(reply)

    def _landed(
        self, task: asyncio.Task[None], lua: str, keys: list[str], args: list[Any], what: str
    ) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            self._run_sync(lua, keys, args, what)

    def _run_sync(self, lua: str, keys: list[str], args: list[Any], what: str) -> Any:
        try:
            return self.sync_script(lua)(keys=keys, args=args)
        except Exception as exc:
            logger.warning("%s (%s)", what, exc)
            return None

    def unlink_matching(self, pattern: str, where: Callable[[str], bool] | None = None) -> None:
        """Delete the keys that match the SCAN `pattern` and pass `where`, in batches (sync).

        Redis's KEYS would block the server on a large database; SCAN walks it in steps
        and UNLINK frees the values in the background.
        """
        client = self.sync_client()
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            if where is not None and not where(key.decode()):
                continue
            batch.append(key)
            if len(batch) >= _UNLINK_BATCH:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)

    async def aclose(self) -> None:
        """Finish the background writes, then close this loop's client and the sync one.

        Later calls reopen them.
        """
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        with self._lock:
            entry = self._clients.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.keeper.aclose()
        self._close_sync()

    def _close_sync(self) -> None:
        sync, self._sync = self._sync, None
        self._sync_scripts.clear()
        if sync is not None:
            sync.close()

    async def _open(self) -> _LoopClient:
        from redis.asyncio import BlockingConnectionPool, Redis

        loop = asyncio.get_running_loop()
        client = Redis.from_pool(BlockingConnectionPool.from_url(self.url, **POOL_DEFAULTS))
        keeper = close_at_shutdown(client.aclose)
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


def _undo(done: asyncio.Future[Any], undo: Callable[[Any], None]) -> None:
    if not done.cancelled() and done.exception() is None:
        undo(done.result())


def split_url(url: str, what: str) -> tuple[str, str | None]:
    """`url` without its ``prefix`` query parameter, and that prefix (None if absent).

    Raises:
        ConfigError: not a redis URL redis-py can read, no host, a database that is not
            a number, an empty or repeated prefix, or redis-py missing.
    """
    shown = redact_url(url) if isinstance(url, str) else repr(url)
    try:
        from redis import ConnectionPool
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
        # A pool takes its own options (max_connections) out of the URL's; building it and
        # a connection object from the rest (neither connects) checks every option.
        pool = ConnectionPool.from_url(redis_url)
        pool.connection_class(**pool.connection_kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what}: {shown!r} is not a valid redis URL: {exc}") from exc
    return redis_url, prefixes[0] if prefixes else None


def glob_escape(text: str) -> str:
    """`text` as a SCAN MATCH pattern that matches only itself."""
    return "".join("\\" + c if c in "*?[]\\^" else c for c in text)

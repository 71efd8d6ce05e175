"""`SqliteCache`: the response cache in one sqlite file, so it survives a kernel restart."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from .._http import Response
from ..errors import ConfigError
from ._best_effort import cache_guards
from ._codec import decode_response, encode_response, storage_key

#: Seconds a write waits for another process's write to finish before it fails. Calls are
#: synchronous, so this bounds how long a locked file can hold up the event loop (once: the
#: cache then rests, see `BestEffort`). WAL writes hold the lock for milliseconds.
BUSY_TIMEOUT_S = 1.0
#: Seconds between sweeps that delete expired rows (reads ignore them anyway).
PURGE_INTERVAL_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS apiorch_cache (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    expires REAL NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS apiorch_cache_expires ON apiorch_cache (expires);
"""
_GET = "SELECT value FROM apiorch_cache WHERE namespace = ? AND key = ? AND expires > ?"
_SET = "INSERT OR REPLACE INTO apiorch_cache (namespace, key, expires, value) VALUES (?, ?, ?, ?)"
_PURGE = "DELETE FROM apiorch_cache WHERE expires <= ?"


class SqliteCache:
    """A `Cache` in a sqlite file: entries outlive the process and are shared by every
    process that opens the same file.

    Expiry is wall-clock time (``time.time()``) stored with each row, because a monotonic
    clock restarts with the process; rows past it read as misses and are deleted by a sweep
    at most every `PURGE_INTERVAL_S` seconds. The file is in WAL mode, so readers never wait
    for a writer, and a write waits up to `BUSY_TIMEOUT_S` for another process's write.

    Each thread gets its own connection (and a forked child opens new ones), so the cache
    works from any thread and any event loop, e.g. Dask workers running tasks in threads.
    Calls are synchronous: a read of a local file costs microseconds, less than handing it
    to a thread would.

    The cache is best-effort: if the file fails (locked past the busy timeout, disk full,
    damaged), a get counts as a miss and a set is skipped, so the call still reaches its
    API; the cache is then left alone for 10 s before one call tries it again, and a
    warning is logged at most once a minute (see `BestEffort`). `clear` still raises.

    Keys are stored as `storage_key` strings; values must be `Response` objects, stored
    without their ``Set-Cookie`` headers.

    Raises:
        ConfigError: the file cannot be created or opened as a sqlite database.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time):
        self.path = Path(path).expanduser().absolute()
        self._clock = clock
        self._local = threading.local()
        self._lock = threading.Lock()
        #: (pid, thread, connection) for every connection open, so all can be closed.
        self._connections: list[tuple[int, threading.Thread, sqlite3.Connection]] = []
        weakref.finalize(self, _close_all, self._connections)
        self._next_purge = 0.0
        self._get_guard, self._set_guard = cache_guards(
            f"cache {str(self.path)!r}", (sqlite3.Error,)
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection()  # fail here, not on the first call, for a bad path
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cache: cannot open sqlite file {str(self.path)!r}: {exc}") from exc

    @property
    def url(self) -> str:
        """``sqlite:////absolute/path``: the same file from any working directory."""
        return f"sqlite:///{self.path.as_posix()}"

    @classmethod
    def from_url(cls, url: str) -> SqliteCache:
        """The cache at ``sqlite:///path``: everything after the third slash is the path.

        As in SQLAlchemy, ``sqlite:///cache/api.db`` is relative to the current directory
        (resolved now, so a later ``chdir`` does not move it) and ``sqlite:////tmp/api.db``
        (four slashes) is absolute; ``~`` is expanded. Missing parent directories are
        created.

        Raises:
            ConfigError: not of that form (``sqlite://x.db``, an empty path, a query,
                ``:memory:``), or the file cannot be opened.
        """
        head = "sqlite:///"
        path = url[len(head) :] if url.startswith(head) else ""
        problem = _url_problem(path)
        if problem is not None:
            raise ConfigError(f"cache: bad sqlite URL {url!r}: {problem}")
        return cls(path)

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            return conn
        conn = self._open()
        local.conn, local.pid = conn, os.getpid()
        return conn

    def _open(self) -> sqlite3.Connection:
        # Autocommit (isolation_level=None): every statement is its own short transaction.
        # check_same_thread=False only so that connections can be closed from any thread.
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; a cache can
            conn.executescript(_SCHEMA)  # lose its last writes to a power cut
        except BaseException:
            conn.close()
            raise
        owner = (os.getpid(), threading.current_thread())
        with self._lock:
            # Threads come and go (asyncio.run in a thread each time): close what the dead
            # ones opened rather than keep a connection per thread ever seen.
            dead = [c for c in self._connections if c[0] == owner[0] and not c[1].is_alive()]
            for item in dead:
                self._connections.remove(item)
                item[2].close()
            self._connections.append((*owner, conn))
        return conn

    def get(self, namespace: str, key: Hashable) -> Response | None:
        if not self._get_guard.usable():  # resting after a failure
            return None
        with self._get_guard:
            row = (
                self._connection()
                .execute(_GET, (namespace, storage_key(key), self._clock()))
                .fetchone()
            )
            return decode_response(row[0]) if row is not None else None
        return None

    def set(self, namespace: str, key: Hashable, value: Any, ttl: float) -> None:
        if not isinstance(value, Response):
            raise TypeError(f"SqliteCache stores Response objects, got {type(value).__name__}")
        now = self._clock()
        if not self._set_guard.usable():
            return
        with self._set_guard:
            conn = self._connection()
            conn.execute(_SET, (namespace, storage_key(key), now + ttl, encode_response(value)))
            if now >= self._next_purge:
                self._next_purge = now + PURGE_INTERVAL_S
                conn.execute(_PURGE, (now,))

    def clear(self, namespace: str | None = None) -> None:
        conn = self._connection()
        if namespace is None:
            conn.execute("DELETE FROM apiorch_cache")
        else:
            conn.execute("DELETE FROM apiorch_cache WHERE namespace = ?", (namespace,))

    def close(self) -> None:
        """Close every thread's connection; the cache opens new ones if used again."""
        with self._lock:
            _close_all(self._connections)
        self._local = threading.local()

    def __len__(self) -> int:
        """Entries not yet expired."""
        sql = "SELECT count(*) FROM apiorch_cache WHERE expires > ?"
        return int(self._connection().execute(sql, (self._clock(),)).fetchone()[0])

    def __repr__(self) -> str:
        return f"SqliteCache({str(self.path)!r})"


def _close_all(connections: list[tuple[int, threading.Thread, sqlite3.Connection]]) -> None:
    """Close and forget `connections`; also runs when the cache is garbage-collected."""
    for _, _, conn in connections:
        conn.close()
    connections.clear()


def _url_problem(path: str) -> str | None:
    """Why `path` (what follows ``sqlite:///``) cannot name a cache file, or None."""
    if not path:
        return "use sqlite:///relative/path.db or sqlite:////absolute/path.db"
    if "?" in path:
        return "a query is not supported"
    if path == ":memory:":
        return 'an in-memory sqlite database is per connection; use cache="memory"'
    return None

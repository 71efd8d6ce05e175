"""Response cache: TTL entries per endpoint, and one origin request for concurrent misses.

Entries are grouped by endpoint name so ``clear_cache(name)`` drops exactly that
endpoint's entries. The store is a `Cache` protocol so persistent and shared backends
(sqlite, Redis) can replace the in-memory one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, Protocol

from ._redact import is_secret_name

#: Entries kept by the in-memory cache before the least recently used are dropped.
DEFAULT_MAX_ENTRIES = 10_000


class Cache(Protocol):
    """What the orchestrator needs from a cache backend.

    `namespace` is the endpoint's name, `ttl` is in seconds, and `get` returns None for a
    miss. `get` and `set` may be coroutines (``async def``), for backends that talk to a
    server (`apiorch_nb.backends.RedisCache`); the engine awaits what they return, and a
    synchronous backend (`MemoryCache`, `apiorch_nb.backends.SqliteCache`) costs nothing
    extra. `clear` is synchronous, like ``clear_cache()``.

    The engine lets a backend's errors fail the call: a backend whose store can fail absorbs
    its own failures, as the persistent ones do (a failed get is a miss, a failed set is
    skipped; see `apiorch_nb.backends`).
    """

    def get(self, namespace: str, key: Hashable) -> Any | None: ...
    def set(
        self, namespace: str, key: Hashable, value: Any, ttl: float
    ) -> Awaitable[None] | None: ...
    def clear(self, namespace: str | None = None) -> None: ...


class MemoryCache:
    """An in-process TTL cache with an LRU bound; expired entries vanish on access."""

    __slots__ = ("_clock", "_entries", "max_entries")

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, Hashable], tuple[float, Any]] = OrderedDict()

    def get(self, namespace: str, key: Hashable) -> Any | None:
        entry = self._entries.get((namespace, key))
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[(namespace, key)]
            return None
        self._entries.move_to_end((namespace, key))
        return value

    def set(self, namespace: str, key: Hashable, value: Any, ttl: float) -> None:
        self._entries[(namespace, key)] = (self._clock() + ttl, value)
        self._entries.move_to_end((namespace, key))
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self, namespace: str | None = None) -> None:
        if namespace is None:
            self._entries.clear()
            return
        for k in [k for k in self._entries if k[0] == namespace]:
            del self._entries[k]

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"MemoryCache(entries={len(self._entries)}, max_entries={self.max_entries})"


class SingleFlight:
    """Lets the first of several identical concurrent misses fetch; the rest wait for it.

    `claim` returns None for the leader (who must call `finish`) or a future the follower
    awaits. The future resolves to the leader's cacheable value, or to None when the leader
    got nothing cacheable — then the follower fetches on its own.
    """

    __slots__ = ("_inflight",)

    def __init__(self) -> None:
        self._inflight: dict[tuple[str, Hashable], asyncio.Future[Any]] = {}

    def claim(self, namespace: str, key: Hashable) -> asyncio.Future[Any] | None:
        fut = self._inflight.get((namespace, key))
        if fut is not None and not fut.done():
            return fut
        self._inflight[(namespace, key)] = asyncio.get_running_loop().create_future()
        return None

    def finish(self, namespace: str, key: Hashable, value: Any | None) -> None:
        fut = self._inflight.pop((namespace, key), None)
        if fut is not None and not fut.done():
            fut.set_result(value)


def default_cache_key(
    method: str,
    url: str,
    params: Mapping[str, Any],
    headers: Mapping[str, str],
    body: Any,
) -> str:
    """Method, final URL, params, body and a hash of the credential headers.

    Credentials are part of the key (two users never share an entry) but only as a hash,
    so the key itself holds no secret.
    """
    auth = sorted((k.lower(), str(v)) for k, v in headers.items() if is_secret_name(k))
    auth_hash = hashlib.sha256(repr(auth).encode()).hexdigest()[:16] if auth else ""
    payload = json.dumps(
        [method, url, sorted((str(k), str(v)) for k, v in params.items()), body, auth_hash],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()

"""The demo server's request log, and the middleware that records each request on arrival.

The log is written by the server's loop and read by tests, which may sit in another
thread, so every access goes through one lock.
"""

from __future__ import annotations

import json as _json
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._state import CURRENT_RECORD

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler, Middleware


class Headers(dict[str, str]):
    """Request headers with lowercased names that can be looked up in any case.

    Clients normalise names differently (aiohttp sends ``X-Request-ID`` for
    ``X-Request-Id``), so a test should not depend on the spelling. For a repeated
    header the last value wins.
    """

    __slots__ = ()

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__((name.lower(), value) for name, value in pairs)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name.lower() if isinstance(name, str) else name)

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the server saw it, stamped on arrival before any delay.

    `t` is `time.monotonic()`, the clock asyncio's `loop.time()` reads, so a test can
    compare when its client sent a request with when the server received it. `headers`
    is a `Headers` dict: names are stored lowercased and looked up in any case.
    """

    seq: int
    t: float
    wall: float
    method: str
    path: str
    query: dict[str, str]
    headers: Headers
    body: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None if it is empty or not JSON."""
        if not self.body:
            return None
        try:
            return _json.loads(self.body)
        except ValueError:
            return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; the body becomes text (undecodable bytes are replaced)."""
        return {
            "seq": self.seq,
            "t": self.t,
            "wall": self.wall,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body.decode("utf-8", errors="replace"),
        }


class RequestLog:
    """A bounded, thread-safe log of `RequestRecord`s, oldest dropped first.

    Sequence numbers are handed out with the arrival time under the same lock, so
    `seq` order is arrival order even if bodies finish reading out of order.
    """

    __slots__ = ("_enabled", "_lock", "_next_seq", "_records")

    def __init__(self, limit: int = 100_000, *, enabled: bool = True) -> None:
        if limit < 1:
            raise ValueError(f"log_limit must be >= 1, got {limit}")
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque(maxlen=limit)
        self._next_seq = 1
        self._enabled = enabled

    def arrive(self) -> tuple[int, float, float]:
        """Claim the next sequence number; return (seq, monotonic time, wall time)."""
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            return seq, time.monotonic(), time.time()

    def add(self, record: RequestRecord) -> None:
        """Keep `record`, unless logging is disabled."""
        if self._enabled:
            with self._lock:
                self._records.append(record)

    def records(self) -> list[RequestRecord]:
        """A copy of the log in arrival (`seq`) order."""
        with self._lock:
            out = list(self._records)
        # Nearly always sorted already; timsort makes this a linear check.
        out.sort(key=lambda r: r.seq)
        return out

    def clear(self) -> None:
        """Forget every record and restart sequence numbers at 1."""
        with self._lock:
            self._records.clear()
            self._next_seq = 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)


def max_in_window(times: Sequence[float], window: float) -> int:
    """The most events that fall inside any half-open window ``[t, t + window)``.

    Two events exactly `window` apart never share a window, matching the demo
    server's limiter, so ``max_in_window(sent_times, 1.0) <= 5`` is how a test proves a
    client kept to "5 per second". The input need not be sorted.

    Raises:
        ValueError: `window` is not positive.
    """
    if window <= 0:
        raise ValueError(f"window must be > 0, got {window}")
    ordered = sorted(times)
    best = 0
    start = 0
    for end, t_end in enumerate(ordered):
        while t_end - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _record_middleware(log: RequestLog) -> Middleware:
    """Log each request on arrival, before the latency knob or any handler runs."""

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/_log":  # reading the log must not change it
            return await handler(request)
        seq, t, wall = log.arrive()
        body = await request.read() if request.body_exists else b""
        rec = RequestRecord(
            seq=seq,
            t=t,
            wall=wall,
            method=request.method,
            path=request.path,
            query={k: v for k, v in request.query.items()},  # last value wins
            headers=Headers(request.headers.items()),
            body=body,
        )
        log.add(rec)
        CURRENT_RECORD.set(rec)
        return await handler(request)

    return record

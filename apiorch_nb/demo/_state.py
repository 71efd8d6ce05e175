"""The demo server's mutable state: flaky counters, limiter windows, sleepers.

Routes run on the server's loop while a test may call `reset()` from another thread,
so the counters share one lock. Nothing here speaks HTTP.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._log import RequestLog, RequestRecord

#: The record of the request being handled, set by the server's logging middleware.
CURRENT_RECORD: ContextVar[RequestRecord] = ContextVar("apiorch_demo_record")


@dataclass(frozen=True, slots=True)
class LimitViolation:
    """One 429 issued by `/limited/{key}`: which request, and how long it should wait."""

    seq: int  #: the `RequestRecord.seq` of the refused request
    key: str
    t: float  #: arrival time, `time.monotonic()`
    limit: int
    window: float
    retry_after: float  #: exact seconds until the window has room
    retry_after_header: int  #: the value sent in `Retry-After` (ceil'd, at least 1)


@dataclass
class DemoState:
    """Everything the routes change, shared with the `DemoServer` facade."""

    log: RequestLog
    latency_ms: float = 0.0
    initial_latency_ms: float = 0.0
    down: set[str] = field(default_factory=set)
    stopping: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _flaky: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _windows: dict[str, list[float]] = field(default_factory=dict, init=False, repr=False)
    _violations: list[LimitViolation] = field(default_factory=list, init=False, repr=False)
    _huge: dict[float, bytes] = field(default_factory=dict, init=False, repr=False)
    _sleepers: set[asyncio.Future[None]] = field(default_factory=set, init=False, repr=False)

    def reset(self) -> None:
        with self._lock:
            self._flaky.clear()
            self._windows.clear()
            self._violations.clear()
        self.down.clear()
        self.latency_ms = self.initial_latency_ms
        self.log.clear()

    def flaky_attempt(self, key: str) -> int:
        """Count one more request for `key`; return its 1-based attempt number."""
        with self._lock:
            attempt = self._flaky.get(key, 0) + 1
            self._flaky[key] = attempt
            return attempt

    def admit(
        self, record: RequestRecord, key: str, limit: int, window: float
    ) -> LimitViolation | None:
        """Apply an exact sliding window to `key` at the record's arrival time.

        Only admitted requests occupy the window, so a client that backs off after a
        429 is not punished further. Arrivals at exactly `window` apart do not overlap,
        the same rule `max_in_window` uses.
        """
        now = record.t
        with self._lock:
            times = self._windows.setdefault(key, [])
            while times and now - times[0] >= window:
                times.pop(0)
            if len(times) < limit:
                bisect.insort(times, now)
                return None
            wait = max(times[len(times) - limit] + window - now, 0.0)
            violation = LimitViolation(
                seq=record.seq,
                key=key,
                t=now,
                limit=limit,
                window=window,
                retry_after=wait,
                retry_after_header=max(1, math.ceil(wait)),
            )
            self._violations.append(violation)
            return violation

    async def nap(self, seconds: float | None) -> bool:
        """Sleep `seconds` (None: until stop); return False if the server began stopping.

        Every server-side wait goes through here, so `stop()` wakes them all at once
        instead of waiting out aiohttp's shutdown grace period per connection.
        """
        if self.stopping:
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        timer = None if seconds is None else loop.call_later(seconds, _wake, future)
        self._sleepers.add(future)
        try:
            await future
        finally:
            self._sleepers.discard(future)
            if timer is not None:
                timer.cancel()
        return not self.stopping

    def begin_stopping(self) -> None:
        """Wake every `nap`; call on the server's loop."""
        self.stopping = True
        for future in self._sleepers:
            _wake(future)

    def violation_list(self) -> list[LimitViolation]:
        with self._lock:
            return list(self._violations)

    def huge_body(self, mb: float) -> bytes:
        """A JSON document of about `mb` MiB, built once per size."""
        body = self._huge.get(mb)
        if body is None:
            if len(self._huge) >= 4:
                self._huge.clear()
            body = self._huge[mb] = _build_huge(mb)
        return body


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _build_huge(mb: float) -> bytes:
    target = int(mb * (1 << 20))
    parts: list[str] = []
    size = len('{"items": []}')
    i = 0
    while size < target:
        item = f'{{"id": {i}, "name": "item-{i:08d}", "value": {i % 997}}}'
        parts.append(item)
        size += len(item) + 2
        i += 1
    return ('{"items": [' + ", ".join(parts) + "]}").encode()

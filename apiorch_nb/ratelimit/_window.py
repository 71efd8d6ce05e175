"""Per-category state: each rate's sliding-window log, the FIFO queue and its one timer."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import TYPE_CHECKING

from ._types import RateLimit

if TYPE_CHECKING:
    from ._permit import Permit

#: The clock for every stamp and timer; asyncio's default ``loop.time()`` reads it too.
_monotonic = time.monotonic


class _Window:
    """One rate's admissions, ``(stamp, weight)`` oldest first, and their running sum."""

    __slots__ = ("interval", "limit", "log", "used")

    def __init__(self, rate: RateLimit, log: deque[tuple[float, int]], used: int) -> None:
        self.limit = rate.limit
        self.interval = float(rate.interval)
        self.log = log
        self.used = used

    def expire(self, now: float) -> int:
        log, interval = self.log, self.interval
        # `stamp + interval <= now` is the exact expression the timers are computed from.
        while log and log[0][0] + interval <= now:
            self.used -= log.popleft()[1]
        return self.used

    def add(self, stamp: float, weight: int) -> None:
        log = self.log
        if log and stamp < log[-1][0]:
            # settle(at=...) may stamp before later admissions; keep the log sorted by stamp.
            i = len(log)
            while i and log[i - 1][0] > stamp:
                i -= 1
            log.insert(i, (stamp, weight))
        else:
            log.append((stamp, weight))
        self.used += weight

    def free_at(self, excess: int) -> float:
        """When enough of the oldest entries have aged out to free ``excess`` units."""
        freed = 0
        for stamp, weight in self.log:
            freed += weight
            if freed >= excess:
                return stamp + self.interval
        return math.inf


class _Category:
    """A category's rates, pending weight and FIFO queue; at most one timer."""

    __slots__ = (
        "epoch",
        "max_weight",
        "name",
        "pending",
        "rates",
        "timer",
        "timer_loop",
        "timer_when",
        "waiters",
        "windows",
    )

    def __init__(self, name: str, rates: tuple[RateLimit, ...]) -> None:
        self.name = name
        self.pending = 0  # weight of unsettled permits: counted by every window, never expires
        self.epoch = 0  # bumped by reset(), so permits from before it refund nothing
        self.waiters: deque[_Waiter] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_loop: asyncio.AbstractEventLoop | None = None
        self.timer_when = math.inf
        self.windows: tuple[_Window, ...] = ()
        self.set_rates(rates)

    def set_rates(self, rates: tuple[RateLimit, ...]) -> None:
        # Every window logs the same admissions, so the longest-lived log is the fullest
        # history; new windows start from it and expire what their own interval drops.
        longest = max(self.windows, key=lambda w: w.interval, default=None)
        log, used = (longest.log, longest.used) if longest else (deque(), 0)
        self.rates = rates
        self.windows = tuple(_Window(r, deque(log), used) for r in rates)
        self.max_weight: float = min((r.limit for r in rates), default=math.inf)

    def room(self, weight: int, now: float) -> bool:
        need = self.pending + weight
        for w in self.windows:  # noqa: SIM110  (hot path: a loop beats all(<generator>))
            if w.expire(now) + need > w.limit:
                return False
        return True

    def free_at(self, weight: int, now: float) -> float:
        """The earliest time ``weight`` fits every rate (``now`` if it fits already)."""
        when = now
        need = self.pending + weight
        for w in self.windows:
            excess = w.expire(now) + need - w.limit
            if excess > 0:
                if need > w.limit:
                    return math.inf  # pending weight alone blocks: a settle/release wakes us
                when = max(when, w.free_at(excess))
        return when

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = self.timer_loop = None
            self.timer_when = math.inf


class _Waiter:
    __slots__ = ("arrived", "cats", "future", "queues", "timeout_handle", "weight")

    def __init__(
        self,
        cats: tuple[_Category, ...],
        queues: tuple[_Category, ...],
        weight: int,
        future: asyncio.Future[Permit],
        arrived: float,
    ) -> None:
        self.cats = cats  # every category charged on admission
        self.queues = queues  # the limited ones it queues in; () once it left them
        self.weight = weight
        self.future = future
        self.arrived = arrived
        self.timeout_handle: asyncio.TimerHandle | None = None

"""The engine's own rate limiter: exact sliding windows, strict FIFO, no polling.

A category (``"endpoint:users"``, ``"global"``, ...) has zero or more :class:`RateLimit` objects,
and a request must fit all of them. Each rate keeps a log of admissions, ``(stamp, weight)``
oldest first, with a running sum. A log is exact where a token bucket is not: a bucket that
starts full lets ``2 * limit`` through in one interval, and the servers we call count
windows.

Waiters queue per category, strictly by arrival. A request that counts against several
categories (:meth:`InMemoryRateLimiter.acquire_permit`) queues in each and is admitted only
when it heads all of them and all have room. This cannot deadlock: arrival order is global
and every queue is sorted by it, so the oldest waiter heads every queue it is in and waits
only for capacity, which time (a timer) or a settle/release (an event) frees.

Nothing polls. A waiter is a future on the caller's running loop; each category has at most
one ``call_later`` timer, set for the moment its head's oldest blocking entry ages out.
Stamps and timers use :func:`time.monotonic`, asyncio's default ``loop.time()``. State is
plain data, so one limiter serves several event loops in turn. It is not thread-safe.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol, runtime_checkable

from .errors import ConfigError, RateLimitTimeout

__all__ = [
    "InMemoryRateLimiter",
    "Limiter",
    "Permit",
    "PermitLike",
    "RateLimit",
    "RateLimitStatus",
    "RateLimiterConfig",
    "RateUsage",
]

_monotonic = time.monotonic


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` weight units admitted in any window of ``interval`` seconds.

    Windows are half-open: an entry stamped at ``s`` stops counting at ``s + interval``.

    Raises:
        ConfigError: ``limit`` is not an int >= 1, or ``interval`` is not a finite number > 0.
    """

    limit: int
    interval: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 1:
            raise ConfigError(f"RateLimit.limit must be an int >= 1, got {self.limit!r}")
        interval = self.interval
        if not isinstance(interval, (int, float)) or isinstance(interval, bool):
            raise ConfigError(f"RateLimit.interval must be a number of seconds, got {interval!r}")
        if not 0 < interval < math.inf:
            raise ConfigError(f"RateLimit.interval must be finite and > 0, got {interval!r}")


@dataclass(slots=True)
class RateLimiterConfig:
    """Rates per category; a category not listed uses ``default_rates``.

    A category with no rates at all is unlimited. The limiter copies this at construction,
    so later changes go through :meth:`InMemoryRateLimiter.configure`.

    Raises:
        ConfigError: an entry is not a :class:`RateLimit` or a category name is not a str.
    """

    default_rates: list[RateLimit] = field(default_factory=list)
    categories: dict[str, list[RateLimit]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_rates("RateLimiterConfig.default_rates", self.default_rates)
        for name, rates in self.categories.items():
            if not isinstance(name, str):
                raise ConfigError(f"RateLimiterConfig.categories: key must be a str, got {name!r}")
            _check_rates(f"RateLimiterConfig.categories[{name!r}]", rates)


class RateUsage(NamedTuple):
    """One rate of a category as :meth:`InMemoryRateLimiter.get_status` saw it."""

    limit: int
    interval: float
    used: int  #: weight in the current window, pending permits included
    remaining: int


@dataclass(frozen=True, slots=True)
class RateLimitStatus:
    """A snapshot of one category.

    ``next_free_in`` is 0.0 when a weight-1 request would fit every rate now, and ``inf``
    when only settling or releasing a pending permit can free room.
    """

    category: str
    rates: tuple[RateUsage, ...]
    waiting: int
    next_free_in: float
    pending: int = 0  #: weight held by permits not yet settled or released


def _check_rates(where: str, rates: object) -> tuple[RateLimit, ...]:
    if isinstance(rates, RateLimit):
        raise ConfigError(f"{where} must be a list of RateLimit, got one RateLimit; wrap it in [ ]")
    if isinstance(rates, (str, bytes)) or not isinstance(rates, Iterable):
        raise ConfigError(f"{where} must be a list of RateLimit, got {rates!r}")
    checked = tuple(rates)
    for rate in checked:
        if not isinstance(rate, RateLimit):
            raise ConfigError(f"{where} must hold RateLimit objects, got {rate!r}")
    return checked


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


class Permit:
    """One admission against one or more categories, pending until settled or released.

    While pending its weight counts as used in every window and never expires. Settle it
    when the response arrives: that time bounds when the server saw the request, so the
    server never sees more than ``limit`` in any window whatever the network delay. Release
    it if the request was never sent. The first of the two wins; both are idempotent.

    Hold a permit only for the life of its request: a permit that is never settled keeps
    its capacity for good, and one held while waiting for another permit in the same
    category can wait forever.
    """

    __slots__ = ("_cats", "_epochs", "_limiter", "_state", "admitted_at", "waited", "weight")

    def __init__(
        self,
        limiter: InMemoryRateLimiter,
        cats: tuple[_Category, ...],
        weight: int,
        admitted_at: float,
        waited: float,
    ) -> None:
        self._limiter = limiter
        self._cats = cats
        self._epochs = [c.epoch for c in cats]
        self._state: Literal["pending", "settled", "released"] = "pending"
        self.weight = weight
        self.admitted_at = admitted_at  #: ``time.monotonic()`` at admission
        self.waited = waited  #: seconds spent queued

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(c.name for c in self._cats)

    @property
    def state(self) -> Literal["pending", "settled", "released"]:
        return self._state

    def settle(self, at: float | None = None) -> None:
        """Stamp the admission at ``at`` (default now); it expires ``interval`` later.

        ``at`` is clamped to :attr:`admitted_at`, since no request leaves before admission.
        """
        if self._state != "pending":
            return
        self._state = "settled"
        stamp = _monotonic() if at is None else max(float(at), self.admitted_at)
        self._finish(stamp)

    def release(self) -> None:
        """Refund the admission: the request was never sent."""
        if self._state != "pending":
            return
        self._state = "released"
        self._finish(None)

    def _finish(self, stamp: float | None) -> None:
        weight = self.weight
        wake = []
        for cat, epoch in zip(self._cats, self._epochs, strict=True):
            if cat.epoch != epoch:
                continue  # reset() already forgot this usage
            cat.pending -= weight
            if stamp is not None:
                for window in cat.windows:
                    window.add(stamp, weight)
            if cat.waiters:
                wake.append(cat)
        if wake:
            self._limiter._pump(wake)

    def __repr__(self) -> str:
        return (
            f"<Permit {self._state} categories={list(self.categories)} weight={self.weight} "
            f"waited={self.waited:.3f}s>"
        )


class PermitLike(Protocol):
    """What a :class:`Limiter` backend hands back from ``acquire_permit``."""

    @property
    def waited(self) -> float: ...

    def settle(self, at: float | None = None) -> None: ...

    def release(self) -> None: ...


@runtime_checkable
class Limiter(Protocol):
    """The interface the engine uses, so Redis or sqlite backends can replace the default."""

    async def acquire_permit(
        self, categories: Sequence[str], weight: int = 1, timeout: float | None = None
    ) -> PermitLike: ...

    async def acquire(
        self, category: str, weight: int = 1, timeout: float | None = None
    ) -> float: ...

    def try_acquire(self, category: str, weight: int = 1) -> bool: ...

    def get_status(self, category: str) -> RateLimitStatus: ...

    def reset(self, category: str | None = None) -> None: ...

    def configure(self, category: str, rates: Sequence[RateLimit]) -> None: ...


class InMemoryRateLimiter:
    """Exact sliding-window limits per category, served strictly in arrival order.

    Example::

        limiter = InMemoryRateLimiter(RateLimiterConfig(
            default_rates=[RateLimit(limit=100, interval=60)],
            categories={"limited_api": [RateLimit(limit=10, interval=60)]},
        ))
        await limiter.acquire("limited_api")

    Raises:
        ConfigError: ``config`` is not a :class:`RateLimiterConfig`.
    """

    __slots__ = ("_cats", "_default", "_rates", "config")

    def __init__(self, config: RateLimiterConfig | None = None) -> None:
        if config is None:
            config = RateLimiterConfig()
        elif not isinstance(config, RateLimiterConfig):
            raise ConfigError(f"config must be a RateLimiterConfig, got {config!r}")
        self.config = config  #: the configuration at construction; see configure()
        self._default = _check_rates("default_rates", config.default_rates)
        self._rates = {
            name: _check_rates(f"categories[{name!r}]", rates)
            for name, rates in config.categories.items()
        }
        self._cats: dict[str, _Category] = {}

    # -- public API ----------------------------------------------------------------------

    async def acquire(self, category: str, weight: int = 1, timeout: float | None = None) -> float:
        """Wait until ``category`` admits ``weight`` units; return the seconds waited.

        The admission is stamped at the moment it is granted. A waiter cancelled while queued
        gives up its place; one cancelled after admission but before resuming is refunded.

        Raises:
            ConfigError: ``weight`` is not an int >= 1 or exceeds one of the rates' limit.
            RateLimitTimeout: ``timeout`` seconds passed first; the waiter left the queue.
        """
        cat = self._cats.get(category) or self._category(category)
        if type(weight) is not int or not 1 <= weight <= cat.max_weight:
            weight = _checked_weight(weight, (cat,))
        if not cat.waiters:
            now = _monotonic()
            if cat.room(weight, now):
                for window in cat.windows:
                    window.add(now, weight)
                return 0.0
        permit = await self._wait((cat,), weight, timeout)
        permit.settle(permit.admitted_at)
        return permit.waited

    async def acquire_permit(
        self, categories: Sequence[str], weight: int = 1, timeout: float | None = None
    ) -> Permit:
        """Admit one request against every category in ``categories`` at once.

        All categories are charged at the same moment, and the charge stays pending (used,
        never expiring) until :meth:`Permit.settle` or :meth:`Permit.release`. The waiter
        queues in each limited category and is admitted when it heads them all and all have
        room, so it never holds part of its capacity while waiting for the rest.

        Example::

            permit = await limiter.acquire_permit(["endpoint:users", "global"])
            try:
                response = await send()
            except NeverSentError:  # e.g. the connection was refused
                permit.release()
                raise
            finally:
                permit.settle()  # a no-op after release(); otherwise stamps "now"

        Raises:
            ConfigError: ``categories`` is a str, or ``weight`` can never fit.
            RateLimitTimeout: ``timeout`` seconds passed first; the waiter left every queue.
        """
        cats = self._categories(categories)
        if type(weight) is not int or weight < 1:
            weight = _checked_weight(weight, cats)
        now = _monotonic()
        for cat in cats:
            if weight > cat.max_weight:
                raise _too_heavy(weight, cats)
            if cat.waiters or not cat.room(weight, now):
                _checked_weight(weight, cats)  # the rest of the categories, before queueing
                return await self._wait(cats, weight, timeout)
        for cat in cats:
            cat.pending += weight
        return Permit(self, cats, weight, now, 0.0)

    def try_acquire(self, category: str, weight: int = 1) -> bool:
        """Admit at once if nobody waits in ``category`` and it has room; never wait.

        Raises:
            ConfigError: ``weight`` can never fit.
        """
        cat = self._cats.get(category) or self._category(category)
        if type(weight) is not int or not 1 <= weight <= cat.max_weight:
            weight = _checked_weight(weight, (cat,))
        now = _monotonic()
        if cat.waiters or not cat.room(weight, now):
            return False
        for window in cat.windows:
            window.add(now, weight)
        return True

    def configure(self, category: str, rates: Sequence[RateLimit]) -> None:
        """Set or replace ``category``'s rates; ``[]`` makes it unlimited.

        Recent admissions carry over into the new rates, so reconfiguring on every run
        cannot open a burst. Queued waiters are re-examined; one whose weight no longer fits
        a limit fails with :class:`ConfigError`.

        Raises:
            ConfigError: ``rates`` is not a sequence of :class:`RateLimit`.
        """
        checked = _check_rates(f"configure({category!r}) rates", rates)
        cat = self._category(category)
        self._rates[category] = checked
        if cat.rates != checked:
            cat.set_rates(checked)
            self._pump((cat,))

    def get_status(self, category: str) -> RateLimitStatus:
        """Usage per rate, queue length and time until a weight-1 request would fit."""
        cat = self._category(category)
        now = _monotonic()
        usage = []
        for w in cat.windows:
            used = w.expire(now) + cat.pending
            usage.append(RateUsage(w.limit, w.interval, used, max(0, w.limit - used)))
        next_free = cat.free_at(1, now) - now
        return RateLimitStatus(category, tuple(usage), len(cat.waiters), next_free, cat.pending)

    def reset(self, category: str | None = None) -> None:
        """Forget usage of ``category`` (or of all); waiters are re-examined, not dropped.

        Permits pending at the reset refund nothing when they are later settled or released.
        """
        cats = list(self._cats.values()) if category is None else [self._category(category)]
        for cat in cats:
            cat.epoch += 1
            cat.pending = 0
            for window in cat.windows:
                window.log.clear()
                window.used = 0
        self._pump([c for c in cats if c.waiters])

    def __repr__(self) -> str:
        now = _monotonic()
        shown = []
        for cat in list(self._cats.values())[:8]:
            rates = ", ".join(
                f"{w.expire(now) + cat.pending}/{w.limit} per {w.interval:g}s" for w in cat.windows
            )
            shown.append(f"{cat.name!r}: {rates or 'unlimited'}, {len(cat.waiters)} waiting")
        more = f", +{len(self._cats) - 8} more" if len(self._cats) > 8 else ""
        waiting = sum(len(c.waiters) for c in self._cats.values())
        wake = min((c.timer_when for c in self._cats.values()), default=math.inf)
        wake_s = "none" if wake == math.inf else f"in {max(0.0, wake - now):.3f}s"
        return (
            f"<InMemoryRateLimiter {{{'; '.join(shown)}{more}}} waiting={waiting} "
            f"next_wakeup={wake_s}>"
        )

    # -- internals -----------------------------------------------------------------------

    def _category(self, name: str) -> _Category:
        cat = self._cats.get(name)
        if cat is None:
            if not isinstance(name, str):
                raise ConfigError(f"rate limit category must be a str, got {name!r}")
            cat = self._cats[name] = _Category(name, self._rates.get(name, self._default))
        return cat

    def _categories(self, names: Sequence[str]) -> tuple[_Category, ...]:
        if isinstance(names, str):
            raise ConfigError(f"categories must be a list of names, got the str {names!r}")
        get = self._cats.get
        if len(names) == 1:
            name = names[0]
            return (get(name) or self._category(name),)
        # dict.fromkeys drops duplicates, which would otherwise queue and charge twice.
        return tuple([get(n) or self._category(n) for n in dict.fromkeys(names)])

    async def _wait(
        self, cats: tuple[_Category, ...], weight: int, timeout: float | None
    ) -> Permit:
        now = _monotonic()
        queues = tuple(c for c in cats if c.windows)
        if not queues:  # only unlimited categories (some still draining an old queue)
            for cat in cats:
                cat.pending += weight
            return Permit(self, cats, weight, now, 0.0)
        loop = asyncio.get_running_loop()
        waiter = _Waiter(cats, queues, weight, loop.create_future(), now)
        for cat in queues:
            cat.waiters.append(waiter)
        self._pump(queues)
        fut = waiter.future
        if timeout is not None and not fut.done():
            if timeout > 0:
                waiter.timeout_handle = loop.call_later(timeout, self._time_out, waiter, timeout)
            else:
                self._time_out(waiter, timeout)
        try:
            return await fut
        except BaseException:
            if not fut.done() or fut.cancelled():
                self._leave(waiter)
            elif fut.exception() is None:
                # Admitted, but cancelled before it could use the permit: refund, so a
                # cancelled cell neither leaks capacity nor silently loses a slot.
                fut.result().release()
            raise

    def _pump(self, todo: Iterable[_Category]) -> None:
        """Admit every waiter that can go now; set or cancel the categories' timers."""
        now = _monotonic()
        work = list(todo)
        while work:
            self._serve(work.pop(), now, work)

    def _serve(self, cat: _Category, now: float, work: list[_Category]) -> None:
        waiters = cat.waiters
        while waiters:
            waiter = waiters[0]
            fut = waiter.future
            if fut.done() or fut.get_loop().is_closed():
                # Cancelled or timed out before its own cleanup ran, or stranded on a loop
                # that was closed under it (a notebook restarting its loop): drop it.
                work.extend(self._dequeue(waiter))
                continue
            if any(c.waiters[0] is not waiter for c in waiter.queues):
                # An older waiter heads another of its queues; when it leaves, that queue
                # is pumped and brings us back here.
                cat.cancel_timer()
                return
            if any(waiter.weight > c.max_weight for c in waiter.queues):  # configure() shrank
                work.extend(self._dequeue(waiter))
                fut.set_exception(_too_heavy(waiter.weight, waiter.queues))
                continue
            when = max(c.free_at(waiter.weight, now) for c in waiter.queues)
            if when > now:
                if when == math.inf:
                    cat.cancel_timer()
                else:
                    self._set_timer(cat, when, fut.get_loop())
                return
            work.extend(c for c in self._dequeue(waiter) if c is not cat)
            for c in waiter.cats:
                c.pending += waiter.weight
            fut.set_result(Permit(self, waiter.cats, waiter.weight, now, now - waiter.arrived))
        cat.cancel_timer()

    def _set_timer(self, cat: _Category, when: float, loop: asyncio.AbstractEventLoop) -> None:
        if cat.timer is not None:
            if cat.timer_when == when and cat.timer_loop is loop:
                return
            cat.timer.cancel()
        cat.timer = loop.call_later(max(0.0, when - _monotonic()), self._on_timer, cat)
        cat.timer_loop = loop
        cat.timer_when = when

    def _on_timer(self, cat: _Category) -> None:
        cat.timer = cat.timer_loop = None
        cat.timer_when = math.inf
        self._pump((cat,))

    def _dequeue(self, waiter: _Waiter) -> tuple[_Category, ...]:
        """Take ``waiter`` out of every queue; return the queues it left (idempotent)."""
        queues, waiter.queues = waiter.queues, ()
        for cat in queues:
            if cat.waiters[0] is waiter:
                cat.waiters.popleft()
            else:
                cat.waiters.remove(waiter)
        if waiter.timeout_handle is not None:
            waiter.timeout_handle.cancel()
            waiter.timeout_handle = None
        return queues

    def _leave(self, waiter: _Waiter) -> None:
        left = self._dequeue(waiter)
        if left:
            self._pump(left)

    def _time_out(self, waiter: _Waiter, timeout: float) -> None:
        if waiter.future.done():
            return
        now = _monotonic()
        blocker = next(
            (
                c
                for c in waiter.queues
                if c.waiters[0] is not waiter or c.free_at(waiter.weight, now) > now
            ),
            waiter.queues[0],
        )
        waiter.timeout_handle = None
        self._leave(waiter)
        waiter.future.set_exception(RateLimitTimeout(blocker.name, timeout))


def _checked_weight(weight: object, cats: Iterable[_Category]) -> int:
    if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
        raise ConfigError(f"weight must be an int >= 1, got {weight!r}")
    weight = int(weight)
    if any(weight > c.max_weight for c in cats):
        raise _too_heavy(weight, cats)
    return weight


def _too_heavy(weight: int, cats: Iterable[_Category]) -> ConfigError:
    cat, rate = next((c, r) for c in cats for r in c.rates if weight > r.limit)
    return ConfigError(
        f"weight {weight} can never be admitted in category {cat.name!r}: "
        f"its rate allows at most {rate.limit} per {rate.interval:g}s"
    )

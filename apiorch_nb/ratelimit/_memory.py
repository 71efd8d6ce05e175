"""InMemoryRateLimiter: the default :class:`Limiter`, admitting and waking waiters."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Iterator, Sequence

from ..errors import RateLimitTimeout
from ._permit import Permit
from ._types import (
    RateLimit,
    RateLimiterConfig,
    RateLimitStatus,
    RateUsage,
    _category_names,
    _check_rates,
    _checked_config,
    _int_weight,
    _not_a_name,
    _too_heavy,
)
from ._window import _Category, _monotonic, _Waiter


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
        config, self._default, self._rates = _checked_config(config)
        self.config = config  #: the configuration at construction; see configure()
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
                raise _too_heavy(weight, _rates_of(cats))
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
                raise _not_a_name(name)
            cat = self._cats[name] = _Category(name, self._rates.get(name, self._default))
        return cat

    def _categories(self, names: Sequence[str]) -> tuple[_Category, ...]:
        get = self._cats.get
        if len(names) == 1 and not isinstance(names, str):  # the common case, kept flat
            name = names[0]
            return (get(name) or self._category(name),)
        return tuple([get(n) or self._category(n) for n in _category_names(names)])

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
                fut.set_exception(_too_heavy(waiter.weight, _rates_of(waiter.queues)))
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
    checked = _int_weight(weight)
    if any(checked > c.max_weight for c in cats):
        raise _too_heavy(checked, _rates_of(cats))
    return checked


def _rates_of(cats: Iterable[_Category]) -> Iterator[tuple[str, RateLimit]]:
    return ((c.name, r) for c in cats for r in c.rates)

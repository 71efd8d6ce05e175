"""`RedisRateLimiter`: the engine's exact sliding-window limits, shared through Redis.

Every kernel, process or Dask worker using the same Redis (and prefix) shares each limit:
together they never send more than ``limit`` in any window of ``interval`` seconds.

Why our own Lua script and not the ``limits`` library: we measured ``limits`` (its async
moving-window strategy over redis-py) and it holds a single limit exactly across
processes, but the engine needs three things it cannot give. (1) One request counts
against its endpoint's category and the global one at once; ``limits`` hits one key per
call, so a second hit that fails leaves the first one charged (endpoint 5/s + global 2/s,
three requests: the endpoint window shows 3 used for 2 admitted) and it has no refund. (2)
Permits are settled when the response arrives and released when the request was never
sent; ``limits`` stamps an entry when it is hit and can neither re-stamp nor remove one.
(3) Windows are floats (``rate_limit_window=0.3``); ``limits`` counts whole seconds
(``RateLimitItemPerSecond(5, 0.3).get_expiry() == 0``) and stamps with each client's
``time.time()``. So this module runs one small script per decision
(`_redis_limiter_lua`), with Redis ``TIME`` as the one clock, and ``limits`` is not a
dependency.

Order and waiting: within a process, waiters for one set of categories queue strictly
FIFO and only the head talks to Redis. A refused head is told when room frees and sleeps
on a loop timer until then, or until a permit of this process is settled or released;
nothing polls. Across processes the heads race fairly at those moments. A pending permit
of another process blocks until it could at the earliest have been settled (now +
interval), so a head retries at most once per interval while it waits for such a permit.

Safety margin: an entry counts for ``interval + margin`` (default 5 ms). Stamps are taken
by Redis at settle time, after the response arrived, so they are never earlier than the
server's arrival; the margin covers Redis's wall clock and the server's clock ticking at
slightly different rates (NTP slews up to 0.05 %) and timer rounding. It costs a few ms
per window (0.5 % of a 1 s window's throughput).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from .._redact import redact_url
from ..errors import ConfigError
from ..ratelimit import RateLimit, RateLimiterConfig, RateLimitStatus, RateUsage
from ..ratelimit._types import (
    _category_names,
    _check_rates,
    _checked_config,
    _int_weight,
    _not_a_name,
    _too_heavy,
)
from . import _redis_limiter_lua as lua
from ._redis_conn import RedisConnector, glob_escape
from ._redis_permit import RedisPermit
from ._redis_waiters import Waiter, drop_stranded, kick_head, sleep


class RedisRateLimiter:
    """A `Limiter` whose windows live in Redis, shared by every process that uses them.

    Keys are ``{prefix}:rl:{category}:{limit}/{interval}``, so one category's traffic never
    touches another's, and two processes that configure a category differently each keep
    their own limit. `pending_ttl` bounds how long an unsettled permit counts when its
    process dies (keep it above the longest request timeout). The synchronous methods use
    a synchronous client (one local round trip); the rest run on the caller's loop. Like
    the in-memory limiter, one instance is not thread-safe: each Dask worker builds its own
    from the URL, and Redis is what they share.

    Example::

        limiter = RedisRateLimiter("redis://127.0.0.1:6379/0?prefix=myproj")
        limiter.configure("endpoint:users", [RateLimit(10, 1.0)])
        permit = await limiter.acquire_permit(["endpoint:users", "global"])
        ...  # send the request
        permit.settle()

    Raises:
        ConfigError: a malformed URL, bad `config`, `pending_ttl` or `margin`.
    """

    __slots__ = (
        "_default",
        "_hold_us",
        "_margin_us",
        "_plans",
        "_queues",
        "_rates",
        "_redis",
        "_used",
        "config",
        "prefix",
    )

    def __init__(
        self,
        url: str,
        config: RateLimiterConfig | None = None,
        *,
        prefix: str | None = None,
        pending_ttl: float = 120.0,
        margin: float = 0.005,
    ) -> None:
        config, self._default, self._rates = _checked_config(config)
        for name, value in (("pending_ttl", pending_ttl), ("margin", margin)):
            if not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ConfigError(f"RedisRateLimiter: {name} must be seconds >= 0, got {value!r}")
        self._redis = RedisConnector(url, "limiter", prefix)
        self.prefix = self._redis.prefix
        self.config = config  #: the configuration at construction; see configure()
        self._hold_us = max(1, round(pending_ttl * 1e6))
        self._margin_us = round(margin * 1e6)
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._queues: dict[tuple[str, ...], deque[Waiter]] = {}
        self._used: set[str] = set()  # categories admitted against here (configure carries)

    # -- the Limiter protocol ------------------------------------------------------------

    async def acquire(self, category: str, weight: int = 1, timeout: float | None = None) -> float:
        """Wait until ``category`` admits ``weight`` units; return the seconds waited.

        The admission is stamped (Redis ``TIME``) when it is granted. A waiter cancelled
        while queued gives up its place; one admitted but cancelled is refunded.

        Raises:
            ConfigError: ``weight`` is not an int >= 1 or exceeds one of the rates' limit.
            RateLimitTimeout: ``timeout`` seconds passed first; the waiter left the queue.
        """
        if not isinstance(category, str):
            raise _not_a_name(category)
        _, _, _, waited = await self._admit((category,), weight, 0, timeout)
        return waited

    async def acquire_permit(
        self, categories: Sequence[str], weight: int = 1, timeout: float | None = None
    ) -> RedisPermit:
        """Admit one request against every category in ``categories`` at once (atomically).

        The permit counts as used in every window until :meth:`RedisPermit.settle` (when
        the response arrives) or :meth:`RedisPermit.release` (never sent), or until
        ``pending_ttl`` passes if this process dies first.

        Raises:
            ConfigError: ``categories`` is a str, or ``weight`` can never fit.
            RateLimitTimeout: ``timeout`` seconds passed first; the waiter left the queue.
        """
        cats = _category_names(categories)
        plan, member, stamp, waited = await self._admit(cats, weight, self._hold_us, timeout)
        return RedisPermit(self, cats, plan.keys, member, weight, stamp, waited)

    def try_acquire(self, category: str, weight: int = 1) -> bool:
        """Admit at once if nobody here waits in ``category`` and Redis has room; never wait.

        Raises:
            ConfigError: ``weight`` can never fit.
        """
        plan = self._plan((category,))
        _check_weight(weight, plan)
        if not plan.keys:
            return True
        if any(category in cats and q for cats, q in self._queues.items()):
            return False
        member = self._redis.new_id()
        args = [weight, 0, member, self._margin_us, *plan.rate_args]
        reply = self._redis.sync_script(lua.ADMIT)(keys=plan.keys, args=args)
        if reply[0]:
            self._used.add(category)
        return bool(reply[0])

    def get_status(self, category: str) -> RateLimitStatus:
        """Usage per rate as Redis has it (every process), this process's queue, next room."""
        plan = self._plan((category,))
        waiting = sum(len(q) for cats, q in self._queues.items() if category in cats)
        if not plan.keys:
            return RateLimitStatus(category, (), waiting, 0.0, 0)
        script = self._redis.sync_script(lua.STATUS)
        rows = script(keys=plan.keys, args=[self._margin_us, *plan.rate_args])
        usage, next_free, pending = [], 0.0, 0
        for rate, (used, held, wait_us) in zip(plan.rates, rows, strict=True):
            usage.append(RateUsage(rate.limit, rate.interval, used, max(0, rate.limit - used)))
            pending = max(pending, held)
            wait = math.inf if held + 1 > rate.limit else wait_us / 1e6
            next_free = max(next_free, wait)
        return RateLimitStatus(category, tuple(usage), waiting, next_free, pending)

    def reset(self, category: str | None = None) -> None:
        """Forget the usage of ``category`` (or of all) for every process; wake waiters.

        Permits pending at the reset refund nothing when they are later settled.
        """
        base = f"{self.prefix}:rl:"
        if category is None:
            self._redis.unlink_matching(base + "*")
        else:
            # category "a" must not take "a:b"'s keys: after the category only the rate stays
            rest = len(base) + len(category) + 1
            self._redis.unlink_matching(
                f"{base}{glob_escape(category)}:*", where=lambda key: ":" not in key[rest:]
            )
        self._wake(None if category is None else (category,))

    def configure(self, category: str, rates: Sequence[RateLimit]) -> None:
        """Set or replace ``category``'s rates here; ``[]`` makes it unlimited.

        The rates are this process's view (they name the keys). If this limiter already
        admitted in the category, recent admissions are copied into the new rates' keys,
        so changing the rates cannot open a burst. Queued waiters are re-examined.

        Raises:
            ConfigError: ``rates`` is not a sequence of :class:`RateLimit`.
        """
        checked = _check_rates(f"configure({category!r}) rates", rates)
        if not isinstance(category, str):
            raise _not_a_name(category)
        old = self._rates.get(category, self._default)
        self._rates[category] = checked
        if old == checked:
            return
        self._plans.clear()
        if old and checked and category in self._used:
            source = max(old, key=lambda r: r.interval)
            keys = [self._key(category, source), *(self._key(category, r) for r in checked)]
            args = [self._margin_us, *(round(r.interval * 1e6) for r in checked)]
            self._redis.sync_script(lua.CARRY)(keys=keys, args=args)
        self._wake((category,))

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Finish the settles in flight, then close this loop's client and the sync one."""
        await self._redis.aclose()

    @property
    def _tasks(self) -> set[asyncio.Task[None]]:
        """The settles and refunds in flight (bench/redis_limiter_cost.py waits for them)."""
        return self._redis.tasks

    def __repr__(self) -> str:
        waiting = sum(len(q) for q in self._queues.values())
        return (
            f"<RedisRateLimiter {redact_url(self._redis.url)!r} prefix={self.prefix!r} "
            f"categories={len(self._rates)} waiting={waiting} settling={len(self._tasks)}>"
        )

    # -- admission -------------------------------------------------------------------------

    async def _admit(
        self, cats: tuple[str, ...], weight: int, hold_us: int, timeout: float | None
    ) -> tuple[_Plan, str, int, float]:
        """Queue FIFO behind this process's earlier waiters, then ask Redis until admitted."""
        plan = self._plan(cats)
        _check_weight(weight, plan)
        if not plan.keys:
            return plan, "", 0, 0.0
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = None if timeout is None else started + timeout
        queue = self._queue(cats)
        waiter = Waiter(loop)
        queue.append(waiter)
        try:
            while queue[0] is not waiter:
                await sleep(waiter, None, deadline, timeout, plan.owners[0])
            while True:
                member = self._redis.new_id()
                reply = await self._ask(plan, member, weight, hold_us)
                if reply[0]:
                    self._used.update(cats)
                    return plan, member, int(reply[1]), loop.time() - started
                blocker = plan.owners[int(reply[2]) - 1]
                await sleep(waiter, int(reply[1]) / 1e6, deadline, timeout, blocker)
                plan = self._plan(cats)  # configure() may have changed the rates meanwhile
                _check_weight(weight, plan)
                if not plan.keys:
                    return plan, "", 0, loop.time() - started
        finally:
            self._leave(queue, waiter)

    async def _ask(self, plan: _Plan, member: str, weight: int, hold_us: int) -> list[Any]:
        args = [weight, hold_us, member, self._margin_us, *plan.rate_args]
        return await self._redis.shielded_script(  # type: ignore[no-any-return]
            lua.ADMIT, plan.keys, args, lambda reply: self._refund(reply, plan, member, weight)
        )

    def _refund(self, reply: list[Any], plan: _Plan, member: str, weight: int) -> None:
        """Release an admission whose caller was cancelled before it heard the reply."""
        if reply[0]:
            cats = tuple(dict.fromkeys(plan.owners))
            self._finish(plan.keys, "release", member, weight, 0, 0, cats)

    def _leave(self, queue: deque[Waiter], waiter: Waiter) -> None:
        if queue and queue[0] is waiter:
            queue.popleft()
            kick_head(queue)
        else:
            with contextlib.suppress(ValueError):  # dropped already: stranded on a closed loop
                queue.remove(waiter)

    def _wake(self, cats: Iterable[str] | None) -> None:
        """Let the heads of the queues touching ``cats`` (None: all) ask Redis again now."""
        names = None if cats is None else set(cats)
        for key, queue in self._queues.items():
            if queue and (names is None or not names.isdisjoint(key)):
                kick_head(queue)

    # -- settle and release ----------------------------------------------------------------

    def _finish(
        self,
        keys: list[str],
        action: Literal["settle", "release"],
        member: str,
        weight: int,
        ago_us: int,
        floor_us: int,
        cats: tuple[str, ...],
    ) -> None:
        """Re-stamp or remove a permit's entries (in the background on a running loop).

        Then wake the waiters of ``cats``, whether or not Redis took the write.
        """
        self._redis.background_script(
            lua.FINISH,
            keys,
            [action, member, weight, ago_us, floor_us],
            f"rate limiter: could not {action} a permit in Redis; its capacity returns after "
            "pending_ttl",
            lambda _: self._wake(cats),
        )

    # -- plans -------------------------------------------------------------------------------

    def _plan(self, cats: tuple[str, ...]) -> _Plan:
        plan = self._plans.get(cats)
        if plan is None:
            plan = self._plans[cats] = _Plan(
                [(c, r) for c in cats for r in self._rates.get(c, self._default)], self._key
            )
        return plan

    def _queue(self, cats: tuple[str, ...]) -> deque[Waiter]:
        queue = self._queues.get(cats)
        if queue is None:
            queue = self._queues[cats] = deque()
        drop_stranded(queue)
        return queue

    def _key(self, category: str, rate: RateLimit) -> str:
        return f"{self.prefix}:rl:{category}:{rate.limit}/{rate.interval:g}"


class _Plan:
    """The keys one set of categories is charged against, and the script's rate arguments."""

    __slots__ = ("keys", "max_weight", "owners", "rate_args", "rates")

    def __init__(self, pairs: list[tuple[str, RateLimit]], key: Any) -> None:
        self.keys: list[str] = [key(c, r) for c, r in pairs]
        self.owners = [c for c, _ in pairs]  # the category of each key, for timeouts
        self.rates = [r for _, r in pairs]
        self.rate_args = [a for r in self.rates for a in (r.limit, round(r.interval * 1e6))]
        self.max_weight: float = min((r.limit for r in self.rates), default=math.inf)


def _check_weight(weight: object, plan: _Plan) -> None:
    if type(weight) is int and 1 <= weight <= plan.max_weight:
        return
    checked = _int_weight(weight)
    if checked > plan.max_weight:
        raise _too_heavy(checked, zip(plan.owners, plan.rates, strict=True))

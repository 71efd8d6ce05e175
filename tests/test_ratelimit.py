"""Behaviour of the in-memory limiter: exact windows, strict FIFO, permits, no polling.

Timing tests use real time with small intervals and generous bounds; where exactness is the
point they check the admission stamps the limiter itself records (``Permit.admitted_at``).
"""

from __future__ import annotations

import asyncio
import math
import random
import subprocess
import sys
import time

import pytest

from apiorch_nb.errors import ConfigError, RateLimitTimeout
from apiorch_nb.ratelimit import (
    InMemoryRateLimiter,
    Limiter,
    Permit,
    RateLimit,
    RateLimiterConfig,
    RateLimitStatus,
    RateUsage,
)


def make(**categories: list[RateLimit]) -> InMemoryRateLimiter:
    return InMemoryRateLimiter(RateLimiterConfig(categories=categories))


def timers(limiter: InMemoryRateLimiter) -> int:
    """How many categories hold a wake-up timer (white-box: the no-polling promise)."""
    return sum(cat.timer is not None for cat in limiter._cats.values())


async def settle_loop() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": -3}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": 1, "interval": 0}, "interval"),
        ({"limit": 1, "interval": -1.0}, "interval"),
        ({"limit": 1, "interval": math.nan}, "interval"),
        ({"limit": 1, "interval": math.inf}, "interval"),
        ({"limit": 1, "interval": "60"}, "interval"),
    ],
)
def test_rate_limit_refuses_impossible_values_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError, match=f"RateLimit.{field}") as info:
        RateLimit(**kwargs)  # type: ignore[arg-type]
    assert repr(kwargs.get(field)) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_config_refuses_entries_that_are_not_rate_limits() -> None:
    with pytest.raises(ConfigError, match="wrap it"):
        RateLimiterConfig(default_rates=RateLimit(1))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"categories\['a'\]"):
        RateLimiterConfig(categories={"a": ["10/min"]})  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="config must be"):
        InMemoryRateLimiter({"a": []})  # type: ignore[arg-type]


async def test_impossible_weights_are_refused_at_once() -> None:
    limiter = make(a=[RateLimit(10, 60)], b=[RateLimit(2, 60)])
    for weight in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="weight must be an int >= 1"):
            await limiter.acquire("a", weight=weight)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="weight 11 can never be admitted in category 'a'"):
        await limiter.acquire("a", weight=11)
    with pytest.raises(ConfigError, match="category 'b'"):
        limiter.try_acquire("b", weight=3)
    with pytest.raises(ConfigError, match="category 'b'"):
        await limiter.acquire_permit(["a", "b"], weight=3)
    with pytest.raises(ConfigError, match="str"):
        await limiter.acquire_permit("a")
    assert limiter.get_status("a").rates[0].used == 0


async def test_too_heavy_for_a_later_category_fails_before_queueing() -> None:
    limiter = make(a=[RateLimit(5, 60)], b=[RateLimit(2, 60)])
    await limiter.acquire("a", weight=5)  # a is full, so the fast path stops at a
    with pytest.raises(ConfigError, match="category 'b'"):
        await limiter.acquire_permit(["a", "b"], weight=3, timeout=1)
    assert limiter.get_status("a").waiting == 0


# -- exact sliding window ---------------------------------------------------------------


async def test_no_window_admits_more_than_the_limit_in_real_time() -> None:
    limiter = make(api=[RateLimit(5, 0.2)])
    start = time.monotonic()
    seen: list[float] = []

    async def one() -> None:
        await limiter.acquire("api")
        seen.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(20)))
    total = time.monotonic() - start
    # Recorded after resuming, so allow a little jitter: any 0.18 s holds at most 5.
    seen.sort()
    assert all(seen[i + 5] - seen[i] >= 0.18 for i in range(len(seen) - 5))
    assert 0.57 <= total <= 0.6 + 0.3  # theory: bursts at 0, 0.2, 0.4, 0.6


async def test_permit_stamps_are_exact_in_every_window() -> None:
    limiter = make(api=[RateLimit(5, 0.1)])

    async def one() -> float:
        permit = await limiter.acquire_permit(["api"])
        permit.settle(permit.admitted_at)
        return permit.admitted_at

    stamps = sorted(await asyncio.gather(*(one() for _ in range(20))))
    # Half-open windows: the sixth admission is never earlier than the first plus interval.
    assert all(stamps[i + 5] >= stamps[i] + 0.1 for i in range(len(stamps) - 5))
    assert stamps[-1] - stamps[0] < 0.3 + 0.2


async def test_capacity_frees_exactly_when_the_oldest_entry_ages_out() -> None:
    limiter = make(api=[RateLimit(2, 0.3)])
    await limiter.acquire("api")
    await asyncio.sleep(0.15)
    await limiter.acquire("api")
    assert 0.08 <= limiter.get_status("api").next_free_in <= 0.16
    waited = await limiter.acquire("api")  # frees when the first ages out, not the second
    assert 0.08 <= waited <= 0.25


async def test_every_rate_of_a_category_must_fit() -> None:
    limiter = make(api=[RateLimit(5, 1.0), RateLimit(2, 0.1)])
    waits = [await limiter.acquire("api") for _ in range(5)]
    assert waits[:2] == [0.0, 0.0]
    assert sum(waits) == pytest.approx(0.2, abs=0.1)  # the 2-per-0.1 s rate paced them
    status = limiter.get_status("api")
    assert [r.remaining for r in status.rates] == [0, 1]
    assert 0.5 < status.next_free_in <= 1.0  # now the 5-per-second rate is what blocks


# -- FIFO -------------------------------------------------------------------------------


async def test_waiters_are_served_in_arrival_order() -> None:
    limiter = make(api=[RateLimit(1, 0.02)])
    await limiter.acquire("api")
    order: list[int] = []

    async def one(i: int) -> None:
        await limiter.acquire("api")
        order.append(i)

    tasks = []
    for i in range(10):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == list(range(10))


async def test_heavy_request_is_not_overtaken_by_later_light_ones() -> None:
    limiter = make(api=[RateLimit(3, 0.2)])
    await limiter.acquire("api", weight=2)  # one unit left: enough for a light request
    order: list[str] = []

    async def one(name: str, weight: int) -> float:
        waited = await limiter.acquire("api", weight=weight)
        order.append(name)
        return waited

    heavy = asyncio.create_task(one("heavy", 3))
    await asyncio.sleep(0)
    light = [asyncio.create_task(one(f"light{i}", 1)) for i in range(2)]
    await settle_loop()
    assert order == []  # the free unit is not handed to the light requests
    assert limiter.get_status("api").rates[0].remaining == 1
    assert not limiter.try_acquire("api")
    heavy_wait = await heavy
    light_waits = await asyncio.gather(*light)
    assert order == ["heavy", "light0", "light1"]
    assert 0.15 <= heavy_wait <= 0.35
    assert min(light_waits) >= heavy_wait


# -- several categories -----------------------------------------------------------------


async def test_permit_charges_every_category_at_the_same_moment() -> None:
    limiter = make(a=[RateLimit(2, 0.3)], b=[RateLimit(1, 0.3)])
    first = await limiter.acquire_permit(["endpoint", "a", "b"])
    assert first.categories == ("endpoint", "a", "b")
    assert [limiter.get_status(c).pending for c in "ab"] == [1, 1]
    first.settle()

    second = asyncio.create_task(limiter.acquire_permit(["a", "b"]))
    await settle_loop()
    # Waiting for b does not hold a unit of a, but it does keep a's queue in order.
    assert limiter.get_status("a").rates[0].used == 1
    assert limiter.get_status("a").waiting == 1
    assert not limiter.try_acquire("a")
    permit = await second
    assert 0.2 <= permit.waited <= 0.5
    assert [limiter.get_status(c).pending for c in "ab"] == [1, 1]
    permit.settle()
    assert [limiter.get_status(c).rates[0].used for c in "ab"] == [1, 1]  # first aged out


async def test_duplicate_categories_are_charged_once() -> None:
    limiter = make(a=[RateLimit(2, 60)])
    permit = await limiter.acquire_permit(["a", "a"])
    permit.settle()
    assert limiter.get_status("a").rates[0].used == 1


async def test_busy_category_never_blocks_an_unrelated_one() -> None:
    limiter = make(a=[RateLimit(1, 60)], b=[RateLimit(1, 60)])
    await limiter.acquire("a")
    blocked = asyncio.create_task(limiter.acquire_permit(["a", "c"]))
    await settle_loop()
    assert limiter.get_status("c").waiting == 0  # c is unlimited: nobody queues there
    assert await limiter.acquire("b") == 0.0
    assert (await limiter.acquire_permit(["c", "d"])).waited == 0.0
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked


async def test_crossing_multi_category_waiters_never_deadlock_and_stay_fifo() -> None:
    names = ["a", "b", "c"]
    limiter = make(**{n: [RateLimit(2, 0.02)] for n in names})
    rng = random.Random(7)
    plans = [rng.sample(names, rng.randint(1, 3)) for _ in range(45)]

    async def one(cats: list[str]) -> float:
        permit = await limiter.acquire_permit(cats)
        permit.settle(permit.admitted_at)
        return permit.admitted_at

    tasks = []
    for cats in plans:
        tasks.append(asyncio.create_task(one(cats)))
        await asyncio.sleep(0)
    stamps = await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
    for name in names:
        mine = [s for s, cats in zip(stamps, plans, strict=True) if name in cats]
        assert mine == sorted(mine)  # admitted in arrival order within the category
        assert all(mine[i + 2] >= mine[i] + 0.02 for i in range(len(mine) - 2))
    assert timers(limiter) == 0


# -- pending permits --------------------------------------------------------------------


async def test_pending_permit_blocks_until_settled_then_ages_from_settle_time() -> None:
    limiter = make(api=[RateLimit(1, 0.1)])
    permit = await limiter.acquire_permit(["api"])
    waiter = asyncio.create_task(limiter.acquire("api"))
    await asyncio.sleep(0.25)  # far past the interval: a pending entry never expires
    assert not waiter.done()
    assert limiter.get_status("api").next_free_in == math.inf
    assert timers(limiter) == 0  # only a settle can help, so nothing is scheduled
    settled_at = time.monotonic()
    permit.settle()
    await waiter
    assert 0.09 <= time.monotonic() - settled_at <= 0.25
    assert permit.state == "settled"


async def test_settle_at_an_earlier_time_ages_from_then_but_never_before_admission() -> None:
    limiter = make(api=[RateLimit(1, 0.2)])
    permit = await limiter.acquire_permit(["api"])
    await asyncio.sleep(0.05)
    permit.settle(at=0.0)  # clamped to admitted_at
    assert 0.1 <= limiter.get_status("api").next_free_in <= 0.16
    second = await limiter.acquire_permit(["api"])
    await asyncio.sleep(0.1)
    second.settle(at=time.monotonic() - 0.05)  # e.g. the response's own timestamp
    assert 0.12 <= limiter.get_status("api").next_free_in <= 0.16


async def test_release_refunds_and_wakes_the_waiter_at_once() -> None:
    limiter = make(api=[RateLimit(1, 60)])
    permit = await limiter.acquire_permit(["api"])
    waiter = asyncio.create_task(limiter.acquire("api"))
    await settle_loop()
    permit.release()
    assert await asyncio.wait_for(waiter, timeout=0.5) < 0.2
    status = limiter.get_status("api")
    assert (status.pending, status.rates[0].used) == (0, 1)


async def test_settle_and_release_are_idempotent_and_the_first_wins() -> None:
    limiter = make(api=[RateLimit(5, 60)])
    settled = await limiter.acquire_permit(["api"])
    settled.settle()
    settled.settle()
    settled.release()
    released = await limiter.acquire_permit(["api"])
    released.release()
    released.release()
    released.settle()
    status = limiter.get_status("api")
    assert (status.pending, status.rates[0].used) == (0, 1)
    assert (settled.state, released.state) == ("settled", "released")
    assert "settled" in repr(settled) and "'api'" in repr(settled)


# -- cancellation and timeouts ----------------------------------------------------------


async def test_cancelled_waiter_frees_its_place() -> None:
    limiter = make(a=[RateLimit(1, 0.2)], b=[RateLimit(5, 60)])
    await limiter.acquire("a")
    first = asyncio.create_task(limiter.acquire_permit(["a", "b"]))
    await asyncio.sleep(0)
    second = asyncio.create_task(limiter.acquire("a"))
    await settle_loop()
    assert limiter.get_status("a").waiting == 2
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert limiter.get_status("a").waiting == 1
    assert limiter.get_status("b").waiting == 0
    assert await asyncio.wait_for(second, timeout=1) <= 0.3
    assert limiter.get_status("b").pending == 0
    assert timers(limiter) == 0


@pytest.mark.parametrize("entry", ["acquire", "acquire_permit"])
async def test_waiter_cancelled_just_after_admission_gets_refunded(entry: str) -> None:
    limiter = make(api=[RateLimit(1, 60)])
    holder = await limiter.acquire_permit(["api"])
    if entry == "acquire":
        task: asyncio.Task[object] = asyncio.create_task(limiter.acquire("api"))
    else:
        task = asyncio.create_task(limiter.acquire_permit(["api"]))
    await settle_loop()
    holder.release()  # admits the waiter synchronously: its future now holds a permit
    task.cancel()  # ...and the caller is cancelled before it could resume
    with pytest.raises(asyncio.CancelledError):
        await task
    status = limiter.get_status("api")
    assert (status.pending, status.rates[0].used, status.waiting) == (0, 0, 0)
    assert limiter.try_acquire("api")


async def test_timeout_raises_and_leaves_the_queue() -> None:
    limiter = make(api=[RateLimit(1, 0.2)])
    await limiter.acquire("api")
    impatient = asyncio.create_task(limiter.acquire("api", timeout=0.05))
    await asyncio.sleep(0)
    patient = asyncio.create_task(limiter.acquire("api"))
    start = time.monotonic()
    with pytest.raises(RateLimitTimeout) as info:
        await impatient
    assert 0.04 <= time.monotonic() - start <= 0.15
    assert (info.value.category, info.value.timeout) == ("api", 0.05)
    assert isinstance(info.value, TimeoutError)
    assert limiter.get_status("api").waiting == 1
    assert 0.1 <= await patient <= 0.35


async def test_timeout_names_the_blocking_category_and_zero_fails_at_once() -> None:
    limiter = make(full=[RateLimit(1, 60)], free=[RateLimit(9, 60)])
    await limiter.acquire("full")
    with pytest.raises(RateLimitTimeout) as info:
        await limiter.acquire_permit(["free", "full"], timeout=0.01)
    assert info.value.category == "full"
    start = time.monotonic()
    with pytest.raises(RateLimitTimeout):
        await limiter.acquire("full", timeout=0)
    assert time.monotonic() - start < 0.05
    assert [limiter.get_status(c).waiting for c in ("free", "full")] == [0, 0]
    assert limiter.get_status("free").pending == 0


# -- try_acquire, status, reset, configure ----------------------------------------------


async def test_try_acquire_refuses_when_full_or_when_someone_waits() -> None:
    limiter = make(api=[RateLimit(3, 0.2)])
    assert limiter.try_acquire("api", weight=2)
    heavy = asyncio.create_task(limiter.acquire("api", weight=3))
    await settle_loop()
    assert limiter.get_status("api").rates[0].remaining == 1
    assert not limiter.try_acquire("api")  # room for one, but the heavy waiter is first
    await heavy
    assert not limiter.try_acquire("api")  # full
    assert limiter.try_acquire("other")  # unlimited


async def test_get_status_reports_usage_waiters_and_next_free() -> None:
    limiter = make(api=[RateLimit(3, 60), RateLimit(2, 0.2)])
    idle = limiter.get_status("api")
    rates = (RateUsage(3, 60.0, 0, 3), RateUsage(2, 0.2, 0, 2))
    assert idle == RateLimitStatus("api", rates, waiting=0, next_free_in=0.0)
    await limiter.acquire("api", weight=2)
    waiter = asyncio.create_task(limiter.acquire("api"))
    await settle_loop()
    status = limiter.get_status("api")
    assert [(r.used, r.remaining) for r in status.rates] == [(2, 1), (2, 0)]
    assert status.waiting == 1
    assert 0.1 < status.next_free_in <= 0.2
    await waiter
    assert limiter.get_status("unknown") == RateLimitStatus("unknown", (), 0, 0.0)


async def test_reset_forgets_usage_and_admits_waiters() -> None:
    limiter = make(a=[RateLimit(1, 60)], b=[RateLimit(1, 60)])
    await limiter.acquire("a")
    await limiter.acquire("b")
    waiter = asyncio.create_task(limiter.acquire("a"))
    await settle_loop()
    limiter.reset("a")
    assert await asyncio.wait_for(waiter, timeout=0.5) < 0.2
    assert limiter.get_status("a").rates[0].used == 1  # the waiter, admitted after the reset
    assert limiter.get_status("b").rates[0].used == 1  # untouched
    limiter.reset()
    assert limiter.get_status("b").rates[0].used == 0


async def test_permit_pending_across_a_reset_refunds_nothing() -> None:
    limiter = make(api=[RateLimit(2, 60)])
    permit = await limiter.acquire_permit(["api"])
    limiter.reset("api")
    permit.settle()
    status = limiter.get_status("api")
    assert (status.pending, status.rates[0].used) == (0, 0)


async def test_configure_replaces_rates_and_keeps_recent_history() -> None:
    limiter = make(api=[RateLimit(10, 60)])
    for _ in range(3):
        await limiter.acquire("api")
    limiter.configure("api", [RateLimit(3, 60)])
    assert not limiter.try_acquire("api")  # the three admissions still count
    limiter.configure("api", [RateLimit(5, 60), RateLimit(100, 3600)])
    assert limiter.try_acquire("api", weight=2)
    assert limiter.get_status("api").rates[1].used == 5
    limiter.configure("api", [])
    assert limiter.try_acquire("api", weight=1000)
    limiter.configure("new", [RateLimit(1, 60)])
    assert limiter.try_acquire("new")
    assert not limiter.try_acquire("new")


async def test_configure_wakes_waiters_and_fails_ones_that_can_never_fit() -> None:
    limiter = make(api=[RateLimit(2, 60)])
    await limiter.acquire("api", weight=2)
    light = asyncio.create_task(limiter.acquire("api"))
    await asyncio.sleep(0)
    heavy = asyncio.create_task(limiter.acquire("api", weight=4))
    await settle_loop()
    limiter.configure("api", [RateLimit(3, 60)])  # one more unit: light goes
    assert await asyncio.wait_for(light, timeout=0.5) < 0.2
    with pytest.raises(ConfigError, match="weight 4"):
        await heavy
    assert limiter.get_status("api").waiting == 0


async def test_categories_without_rates_are_unlimited() -> None:
    bare = InMemoryRateLimiter()
    assert [await bare.acquire("anything") for _ in range(1000)] == [0.0] * 1000
    limiter = InMemoryRateLimiter(
        RateLimiterConfig(
            default_rates=[RateLimit(1, 60)],
            categories={"open": []},
        )
    )
    assert all([limiter.try_acquire("open") for _ in range(100)])
    assert limiter.try_acquire("unlisted")  # falls back to the defaults
    assert not limiter.try_acquire("unlisted")
    assert (await limiter.acquire_permit(["open"], weight=10_000)).waited == 0.0


# -- loops, timers, repr ----------------------------------------------------------------


def test_limiter_is_reusable_across_event_loops() -> None:
    limiter = make(api=[RateLimit(2, 0.05)])

    async def burst() -> float:
        waits = await asyncio.gather(*(limiter.acquire("api") for _ in range(5)))
        permit = await limiter.acquire_permit(["api", "other"])
        permit.settle()
        return max(waits)

    first = asyncio.run(burst())
    second = asyncio.run(burst())
    assert 0.05 <= first <= 0.3
    assert 0.05 <= second <= 0.35
    assert timers(limiter) == 0


def test_waiter_stranded_on_a_closed_loop_does_not_block_the_next_loop() -> None:
    limiter = make(api=[RateLimit(1, 0.05)])
    old = asyncio.new_event_loop()
    old.run_until_complete(limiter.acquire("api"))
    stranded = old.create_task(limiter.acquire("api"))
    old.run_until_complete(asyncio.sleep(0.001))
    old.set_exception_handler(lambda loop, context: None)  # "Task was destroyed" noise
    old.close()  # without cancelling the waiter, as a crashed kernel loop would
    assert limiter.get_status("api").waiting == 1
    assert asyncio.run(limiter.acquire("api", timeout=1)) <= 0.1
    assert limiter.get_status("api").waiting == 0
    stranded.get_coro().close()


async def test_no_timer_runs_while_idle() -> None:
    limiter = make(a=[RateLimit(1, 0.05)], b=[RateLimit(1, 0.05)])
    assert timers(limiter) == 0
    await limiter.acquire("a")
    assert timers(limiter) == 0  # the uncontended path schedules nothing

    async def call() -> None:
        permit = await limiter.acquire_permit(["a", "b"])
        permit.settle()

    tasks = [asyncio.create_task(call()) for _ in range(3)]
    late = asyncio.create_task(limiter.acquire("b", timeout=0.01))
    await settle_loop()
    assert 1 <= timers(limiter) <= 2  # one per blocked category at most
    assert "next_wakeup=in" in repr(limiter)
    with pytest.raises(RateLimitTimeout):
        await late
    await asyncio.gather(*tasks)
    assert timers(limiter) == 0
    assert repr(limiter).endswith("waiting=0 next_wakeup=none>")


async def test_repr_shows_categories_waiters_and_next_wakeup() -> None:
    limiter = make(api=[RateLimit(1, 0.2)])
    await limiter.acquire("api")
    limiter.try_acquire("free")
    waiter = asyncio.create_task(limiter.acquire("api"))
    await settle_loop()
    text = repr(limiter)
    assert "'api': 1/1 per 0.2s, 1 waiting" in text
    assert "'free': unlimited, 0 waiting" in text
    assert "waiting=1" in text
    assert "next_wakeup=in 0.1" in text or "next_wakeup=in 0.2" in text
    await waiter


def test_importing_creates_no_loop_task_or_thread() -> None:
    code = (
        "import threading, asyncio.events as ev\n"
        "import apiorch_nb.ratelimit\n"
        "assert ev._get_running_loop() is None\n"
        "assert ev._event_loop_policy is None, 'a loop policy was created'\n"
        "assert threading.active_count() == 1\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=60)


def test_in_memory_limiter_satisfies_the_limiter_protocol() -> None:
    limiter: Limiter = InMemoryRateLimiter()
    assert isinstance(limiter, Limiter)
    assert Permit.__slots__  # permits are cheap: one per request in the engine

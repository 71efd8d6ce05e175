"""Rate limits and breakers shared through a real Redis, checked at a real demo server.

Each test gets an empty redis-server (`redis_url`) and the demo API (`demo`). Several
limiters or orchestrators on one Redis stand for several kernels; the key test runs three
separate OS processes. What counts is what the server saw: `max_in_window` over its
arrival log, checked for the window starting at every arrival.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    BreakerState,
    CallState,
    OrchestrationMode,
)
from apiorch_nb.backends import (
    RedisBreakerStore,
    RedisRateLimiter,
    breaker_store_from_url,
    limiter_from_url,
)
from apiorch_nb.demo import DemoServer, max_in_window
from apiorch_nb.errors import ConfigError, RateLimitTimeout
from apiorch_nb.ratelimit import Limiter, RateLimit

REPO = Path(__file__).resolve().parent.parent

# One process of the key test: an orchestrator with a 10-per-second endpoint limit kept in
# Redis sends `n` requests at once, after the test says go (so all three start together).
WORKER = """
import asyncio, json, sys
from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, OrchestrationMode

url, redis_url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = APIOrchestrationConfig(
    endpoints=[APIEndpoint("shared", url, rate_limit=10, retry_count=0)],
    mode=OrchestrationMode.PARALLEL, rate_limit_window=1.0, max_concurrent=50,
)

async def main():
    async with APIOrchestrator(config, limiter=redis_url) as orchestrator:
        return await asyncio.gather(*(orchestrator.execute() for _ in range(n)))

print("ready", flush=True)
sys.stdin.readline()
print(json.dumps(asyncio.run(main())), flush=True)
"""


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the test's Redis, to look at the keys."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


async def closing(*backends: Any) -> None:
    for backend in backends:
        await backend.aclose()


def orchestrator(*endpoints: APIEndpoint, **options: Any) -> APIOrchestrator:
    backends = {k: options.pop(k) for k in ("limiter", "breakers") if k in options}
    options.setdefault("mode", OrchestrationMode.PARALLEL)
    options.setdefault("max_concurrent", 50)
    config = APIOrchestrationConfig(endpoints=list(endpoints), **options)
    return APIOrchestrator(config, **backends)


def endpoint(name: str, url: str, **kwargs: Any) -> APIEndpoint:
    kwargs.setdefault("retry_count", 0)
    return APIEndpoint(name, url, **kwargs)


@asynccontextmanager
async def sharing_a_circuit(
    redis_url: str, threshold: int, timeout: float, *endpoints: APIEndpoint
) -> AsyncIterator[list[APIOrchestrator]]:
    """One orchestrator per endpoint (one kernel each, say), their breakers kept in Redis."""
    options = {"circuit_breaker_threshold": threshold, "circuit_breaker_timeout": timeout}
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(orchestrator(ep, breakers=redis_url, **options))
            for ep in endpoints
        ]


# -- the key test: three OS processes, one limit --------------------------------------------


def test_three_processes_never_exceed_a_shared_limit_at_the_server(
    demo: DemoServer, redis_url: str
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    url = f"{demo.url}/limited/shared?limit=10&window=1"  # the server counts 429s too
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, f"{url}&worker={i}", redis_url, "25"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )
        for i in range(3)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=60) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        results = json.loads(out)
        assert results == [{"shared": {"key": "shared", "ok": True}}] * 25
    arrivals = sorted(r.t for r in demo.requests("/limited/shared"))
    assert len(arrivals) == 75
    assert sorted(r.query["worker"] for r in demo.requests("/limited/shared")) == sorted("012" * 25)
    assert max_in_window(arrivals, 1.0) == 10
    assert demo.violations == []
    # 75 at 10 per second need 7 more windows after the first ten; not much more
    assert 7.0 <= arrivals[-1] - arrivals[0] <= 10.0


# -- the limiter itself ------------------------------------------------------------------------


async def test_waiters_in_one_process_are_served_in_arrival_order(redis_url: str) -> None:
    limiter = RedisRateLimiter(redis_url)
    limiter.configure("fifo", [RateLimit(2, 0.2)])
    admitted: list[int] = []

    async def take(i: int) -> None:
        await limiter.acquire("fifo")
        admitted.append(i)

    tasks = []
    for i in range(8):
        tasks.append(asyncio.create_task(take(i)))
        await asyncio.sleep(0)  # arrival order is creation order
    started = time.monotonic()
    await asyncio.gather(*tasks)
    assert admitted == list(range(8))
    assert 0.6 <= time.monotonic() - started <= 1.2  # 8 at 2 per 0.2 s: three more windows
    await closing(limiter)


async def test_categories_never_block_each_other(redis_url: str, store: redis.Redis) -> None:
    limiter = RedisRateLimiter(redis_url)
    limiter.configure("slow", [RateLimit(1, 10.0)])
    limiter.configure("fast", [RateLimit(100, 10.0)])
    await limiter.acquire("slow")
    blocked = asyncio.create_task(limiter.acquire("slow"))
    started = time.monotonic()
    for _ in range(20):
        assert await limiter.acquire("fast") < 0.05
    assert time.monotonic() - started < 0.5
    assert not blocked.done()
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    assert sorted(store.keys("*")) == ["apiorch:rl:fast:100/10", "apiorch:rl:slow:1/10"]
    await closing(limiter)


async def test_keys_are_namespaced_by_the_url_prefix(redis_url: str, store: redis.Redis) -> None:
    limiter = limiter_from_url(redis_url + "?prefix=proj")
    breakers = breaker_store_from_url(redis_url + "?prefix=proj")
    assert isinstance(limiter, RedisRateLimiter) and isinstance(breakers, RedisBreakerStore)
    assert isinstance(limiter, Limiter)
    limiter.configure("endpoint:users", [RateLimit(10, 1.0), RateLimit(3, 0.5)])
    await limiter.acquire("endpoint:users")
    assert sorted(store.keys("*")) == [
        "proj:rl:endpoint:users:10/1",
        "proj:rl:endpoint:users:3/0.5",
    ]
    with pytest.raises(ConfigError, match="prefix"):
        RedisRateLimiter(redis_url + "?prefix=")
    with pytest.raises(ConfigError, match="not a valid redis URL"):
        RedisRateLimiter(redis_url + "?no_such_option=1")
    await closing(limiter)


async def test_more_concurrent_settles_than_connections_wait_for_one(redis_url: str) -> None:
    limiter = RedisRateLimiter(redis_url + "?max_connections=4")  # a pool option in the URL
    limiter.configure("api", [RateLimit(1000, 10.0)])
    permits = [await limiter.acquire_permit(["api"]) for _ in range(200)]
    for permit in permits:
        permit.settle()  # 200 writes in flight at once, queued on 4 connections
    await closing(limiter)  # waits for them
    status = limiter.get_status("api")
    assert status.pending == 0 and status.rates[0].used == 200


async def test_try_acquire_get_status_and_reset_see_every_process(redis_url: str) -> None:
    here, there = RedisRateLimiter(redis_url), RedisRateLimiter(redis_url)
    for limiter in (here, there):
        limiter.configure("api", [RateLimit(3, 10.0)])
    assert here.try_acquire("api") and there.try_acquire("api")
    await here.acquire("api")
    assert not there.try_acquire("api")
    status = there.get_status("api")
    assert status.rates[0].used == 3 and status.rates[0].remaining == 0
    assert 9.0 < status.next_free_in <= 10.01
    assert status.waiting == 0 and status.pending == 0
    there.reset("api")
    assert here.get_status("api").rates[0].used == 0
    assert here.try_acquire("api")
    assert here.get_status("unlimited").next_free_in == 0.0 and here.try_acquire("unlimited")
    await closing(here, there)


async def test_reset_of_one_category_leaves_a_longer_name_alone(
    redis_url: str, store: redis.Redis
) -> None:
    limiter = RedisRateLimiter(redis_url)
    limiter.configure("a", [RateLimit(5, 10.0)])
    limiter.configure("a:b", [RateLimit(5, 10.0)])
    await limiter.acquire("a")
    await limiter.acquire("a:b")
    limiter.reset("a")
    assert store.keys("*") == ["apiorch:rl:a:b:5/10"]
    limiter.reset()
    assert store.keys("*") == []
    await closing(limiter)


async def test_admission_across_categories_is_atomic(redis_url: str) -> None:
    # endpoint 5 per 10 s, global 2 per 10 s: the third request fits the endpoint but not
    # the global limit, and must not use up endpoint capacity while refused
    here, there = RedisRateLimiter(redis_url), RedisRateLimiter(redis_url)
    for limiter in (here, there):
        limiter.configure("endpoint:a", [RateLimit(5, 10.0)])
        limiter.configure("global", [RateLimit(2, 10.0)])
    (await here.acquire_permit(["endpoint:a", "global"])).settle()
    (await there.acquire_permit(["endpoint:a", "global"])).settle()
    with pytest.raises(RateLimitTimeout) as caught:
        await here.acquire_permit(["endpoint:a", "global"], timeout=0.1)
    assert caught.value.category == "global"
    await asyncio.sleep(0.05)  # let the settles land
    assert there.get_status("endpoint:a").rates[0].used == 2
    assert there.get_status("global").rates[0].used == 2
    await closing(here, there)


async def test_a_released_permit_refunds_at_once(redis_url: str) -> None:
    limiter = RedisRateLimiter(redis_url)
    limiter.configure("one", [RateLimit(1, 10.0)])
    permit = await limiter.acquire_permit(["one"])
    waiting = asyncio.create_task(limiter.acquire_permit(["one"], timeout=5))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    permit.release()
    second = await waiting
    assert 0.05 < second.waited < 0.5  # woken by the release, not by the 10 s window
    second.settle()
    permit.settle()  # no-op after release
    assert permit.state == "released" and second.state == "settled"
    await closing(limiter)


async def test_a_pending_permit_counts_until_settled_then_for_one_window(
    redis_url: str,
) -> None:
    here, there = RedisRateLimiter(redis_url), RedisRateLimiter(redis_url)
    for limiter in (here, there):
        limiter.configure("slow", [RateLimit(1, 0.3)])
    permit = await here.acquire_permit(["slow"])
    await asyncio.sleep(0.4)  # longer than the window: a pending permit does not expire
    assert there.get_status("slow").pending == 1
    assert there.get_status("slow").next_free_in == float("inf")
    started = time.monotonic()
    waiter = asyncio.create_task(there.acquire_permit(["slow"]))
    await asyncio.sleep(0.1)
    permit.settle()
    settled_at = time.monotonic()
    (await waiter).settle()
    # admitted a full window after the settle, not after the admission
    assert time.monotonic() - settled_at >= 0.3
    assert time.monotonic() - started <= 1.0
    await closing(here, there)


async def test_a_permit_never_settled_frees_after_pending_ttl(redis_url: str) -> None:
    crashed = RedisRateLimiter(redis_url, pending_ttl=0.2)
    survivor = RedisRateLimiter(redis_url)
    for limiter in (crashed, survivor):
        limiter.configure("api", [RateLimit(1, 0.2)])
    await crashed.acquire_permit(["api"])  # its process "dies": never settled
    started = time.monotonic()
    await survivor.acquire("api", timeout=2)
    assert 0.35 <= time.monotonic() - started <= 1.0  # pending_ttl + one window
    await closing(crashed, survivor)


async def test_a_cancelled_waiter_leaves_no_leaked_capacity(redis_url: str) -> None:
    limiter = RedisRateLimiter(redis_url)
    limiter.configure("api", [RateLimit(1, 0.3)])
    await limiter.acquire("api")
    queued = [asyncio.create_task(limiter.acquire("api")) for _ in range(3)]
    await asyncio.sleep(0.05)
    for task in queued[:2]:  # the head and the one behind it
        task.cancel()
    started = time.monotonic()
    assert await queued[2] < 0.4
    assert time.monotonic() - started < 0.4  # took the head's slot, nothing more
    assert all(t.cancelled() for t in queued[:2])
    status = limiter.get_status("api")
    assert status.rates[0].used == 1 and status.waiting == 0
    await closing(limiter)


async def test_a_permit_admitted_as_its_caller_is_cancelled_is_released(
    redis_url: str,
) -> None:
    limiter = RedisRateLimiter(redis_url)
    limiter.configure("api", [RateLimit(1, 10.0)])
    cancelled = 0
    for i in range(30):  # cancel at points all along the admission's round trip
        task = asyncio.create_task(limiter.acquire_permit(["api"]))
        await asyncio.sleep(i * 0.00003)
        task.cancel()
        try:
            (await task).release()  # admitted before the cancel arrived
        except asyncio.CancelledError:
            cancelled += 1
        await asyncio.sleep(0.01)  # the refund lands
        assert limiter.get_status("api").rates[0].used == 0
    assert cancelled >= 1  # some were cancelled mid-admission (refunded in Redis)
    await closing(limiter)


async def test_configure_carries_recent_admissions_into_new_rates(redis_url: str) -> None:
    limiter = RedisRateLimiter(redis_url)
    limiter.configure("api", [RateLimit(3, 10.0)])
    for _ in range(3):
        await limiter.acquire("api")
    limiter.configure("api", [RateLimit(4, 10.0)])
    assert limiter.try_acquire("api")
    assert not limiter.try_acquire("api")
    with pytest.raises(ConfigError, match="can never be admitted"):
        await limiter.acquire("api", weight=5)
    await closing(limiter)


def test_one_limiter_serves_successive_event_loops(redis_url: str) -> None:
    limiter = RedisRateLimiter(redis_url)
    limiter.configure("api", [RateLimit(5, 10.0)])

    async def take() -> None:
        (await limiter.acquire_permit(["api"])).settle()

    asyncio.run(take())  # the loop's client is closed when asyncio.run shuts down
    asyncio.run(take())
    assert limiter.get_status("api").rates[0].used == 2


def test_a_settle_still_in_flight_lands_when_asyncio_run_shuts_down(redis_url: str) -> None:
    limiter = RedisRateLimiter(redis_url)
    limiter.configure("api", [RateLimit(1, 0.2)])

    async def send_and_quit() -> None:
        (await limiter.acquire_permit(["api"])).settle()  # the write is still to be sent

    asyncio.run(send_and_quit())
    status = limiter.get_status("api")
    assert status.pending == 0 and status.rates[0].used == 1
    time.sleep(0.25)
    assert limiter.try_acquire("api")  # stamped at the settle, so one window later it is free


# -- the engine on Redis ------------------------------------------------------------------------


async def test_two_orchestrators_keep_endpoint_and_global_limits_at_the_server(
    demo: DemoServer, redis_url: str
) -> None:
    def make() -> APIOrchestrator:
        a = endpoint("a", f"{demo.url}/data/a", rate_limit=2)
        b = endpoint("b", f"{demo.url}/data/b")
        return orchestrator(a, b, global_rate_limit=3, rate_limit_window=0.3, limiter=redis_url)

    async with make() as one, make() as two:
        started = time.monotonic()
        await asyncio.gather(*(o.execute() for o in (one, two) for _ in range(3)))
        elapsed = time.monotonic() - started
    a_times = [r.t for r in demo.requests("/data/a")]
    all_times = [r.t for r in demo.requests(prefix="/data/")]
    assert len(a_times) == 6 and len(all_times) == 12
    assert max_in_window(a_times, 0.3) <= 2
    assert max_in_window(all_times, 0.3) == 3
    assert 0.9 <= elapsed <= 2.0  # 12 at 3 per 0.3 s: at least three more windows


# -- shared circuit breakers ----------------------------------------------------------------------


async def test_failures_in_one_orchestrator_open_the_circuit_for_another(
    demo: DemoServer, redis_url: str, store: redis.Redis
) -> None:
    ep = endpoint("svc", f"{demo.url}/status/503")
    async with sharing_a_circuit(redis_url, 3, 60.0, ep, ep) as (one, two):
        await one.execute()
        await two.execute()
        assert two.breakers["svc"].failure_count == 2  # both counted into one circuit
        await one.execute()
        assert one.breakers["svc"].state is BreakerState.OPEN
        result = await two.execute()
        assert two.last_run is not None
        assert two.last_run.records["svc"].state is CallState.CIRCUIT_OPEN
        assert "circuit open" in result["svc"]["error"]
        assert two.breakers["svc"].state is BreakerState.OPEN
        assert two.breakers["svc"].rejections == 1
    assert demo.count("/status/503") == 3
    assert store.hget("apiorch:cb:svc", "open_until") is not None


async def test_half_open_lets_exactly_one_probe_through_across_orchestrators(
    demo: DemoServer, redis_url: str
) -> None:
    ep = endpoint("svc", f"{demo.url}/flaky/p?fail=2")  # the third request succeeds
    async with sharing_a_circuit(redis_url, 2, 0.3, ep, ep) as (one, two):
        await one.execute()
        await two.execute()
        assert demo.count("/flaky/p") == 2
        await asyncio.sleep(0.35)
        demo.latency_ms = 200  # everyone else asks while the probe is still out
        results = await asyncio.gather(*(o.execute() for o in (one, two) * 4))
        demo.latency_ms = 0
        assert demo.count("/flaky/p") == 3
        probes = [r["svc"] for r in results if "attempt" in r["svc"]]
        refused = [r["svc"] for r in results if "circuit open" in r["svc"].get("error", "")]
        assert probes == [{"key": "p", "attempt": 3}]
        assert len(refused) == 7
        await one.execute()
        await two.execute()
        assert one.breakers["svc"].state is BreakerState.CLOSED
        assert two.breakers["svc"].state is BreakerState.CLOSED
    assert demo.count("/flaky/p") == 5


async def test_a_failed_probe_reopens_the_circuit_for_everyone(
    demo: DemoServer, redis_url: str
) -> None:
    ep = endpoint("svc", f"{demo.url}/status/503")
    async with sharing_a_circuit(redis_url, 1, 0.3, ep, ep) as (one, two):
        await one.execute()
        await asyncio.sleep(0.35)
        await two.execute()  # the probe fails
        assert demo.count("/status/503") == 2
        await one.execute()
        await two.execute()
        assert demo.count("/status/503") == 2
        assert one.breakers["svc"].state is BreakerState.OPEN


async def test_a_cancelled_probe_hands_the_probe_back_at_once(
    demo: DemoServer, redis_url: str
) -> None:
    trips = endpoint("svc", f"{demo.url}/status/503")
    hangs = endpoint("svc", f"{demo.url}/hang", timeout=10.0)
    answers = endpoint("svc", f"{demo.url}/users/1")
    async with sharing_a_circuit(redis_url, 1, 0.2, trips, hangs, answers) as (
        tripper,
        prober,
        other,
    ):
        await tripper.execute()
        await asyncio.sleep(0.25)
        probe = asyncio.create_task(prober.execute())
        while demo.count("/hang") == 0:
            await asyncio.sleep(0.01)
        refused = await other.execute()
        assert "circuit open" in refused["svc"]["error"]
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        await asyncio.sleep(0.05)  # the lease is handed back in the background
        result = await other.execute()  # probes now, not after probe_ttl
        assert result["svc"]["id"] == 1
        assert other.breakers["svc"].state is BreakerState.CLOSED

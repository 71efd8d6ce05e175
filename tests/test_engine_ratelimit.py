"""Rate limits end to end: what the demo server saw, window by window.

The limiter's own unit tests live in test_ratelimit.py. Here each test runs real calls
and checks the server's arrival log with `max_in_window`: no window of the configured
length ever holds more requests than the limit, and the run takes about as long as the
limit forces, not much longer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    CallState,
    OrchestrationMode,
)
from apiorch_nb.demo import DemoServer, max_in_window


def orchestrator(
    *endpoints: APIEndpoint, limiter: str | None = None, **config: Any
) -> APIOrchestrator:
    config.setdefault("mode", OrchestrationMode.PARALLEL)
    config.setdefault("max_concurrent", 50)
    return APIOrchestrator(
        APIOrchestrationConfig(endpoints=list(endpoints), **config), limiter=limiter
    )


def endpoint(name: str, url: str, **kwargs: Any) -> APIEndpoint:
    kwargs.setdefault("retry_count", 0)
    return APIEndpoint(name, url, **kwargs)


async def run_concurrently(o: APIOrchestrator, times: int) -> tuple[list[Any], float]:
    """`times` concurrent executes of `o`; return their results and the wall time."""
    started = time.monotonic()
    results = await asyncio.gather(*(o.execute() for _ in range(times)))
    return results, time.monotonic() - started


async def test_endpoint_rate_limit_holds_in_every_window(demo: DemoServer) -> None:
    ep = endpoint("data", f"{demo.url}/data/a", rate_limit=5)
    async with orchestrator(ep, rate_limit_window=0.5) as o:
        results, elapsed = await run_concurrently(o, 15)
    arrivals = [r.t for r in demo.requests("/data/a")]
    assert len(arrivals) == 15
    assert all(r == {"data": {"source": "a", "value": 1}} for r in results)
    assert max_in_window(arrivals, 0.5) == 5
    # three batches of five: the third cannot start before two full windows have passed
    assert arrivals[-1] - arrivals[0] >= 1.0
    assert 1.0 <= elapsed <= 1.6


async def test_burst_limit_holds_in_every_second(demo: DemoServer) -> None:
    ep = endpoint("data", f"{demo.url}/data/b", burst_limit=2)
    async with orchestrator(ep) as o:
        _, elapsed = await run_concurrently(o, 4)
    arrivals = [r.t for r in demo.requests("/data/b")]
    assert len(arrivals) == 4
    assert max_in_window(arrivals, 1.0) == 2
    assert 1.0 <= elapsed <= 1.6


async def test_global_rate_limit_spans_endpoints(demo: DemoServer) -> None:
    eps = [endpoint(n, f"{demo.url}/data/{n}") for n in ("x", "y", "z")]
    async with orchestrator(*eps, global_rate_limit=3, rate_limit_window=0.3) as o:
        _, elapsed = await run_concurrently(o, 3)
    arrivals = [r.t for r in demo.requests(prefix="/data/")]
    assert len(arrivals) == 9
    assert max_in_window(arrivals, 0.3) == 3
    assert 0.6 <= elapsed <= 1.2


async def test_a_request_counts_against_its_endpoint_limit_and_the_global_one(
    demo: DemoServer,
) -> None:
    # endpoint a alone may send 2 per window; together a and b may send 3 per window
    a = endpoint("a", f"{demo.url}/data/a", rate_limit=2)
    b = endpoint("b", f"{demo.url}/data/b")
    async with orchestrator(a, b, global_rate_limit=3, rate_limit_window=0.3) as o:
        _, elapsed = await run_concurrently(o, 4)
    a_times = [r.t for r in demo.requests("/data/a")]
    all_times = [r.t for r in demo.requests(prefix="/data/")]
    assert len(a_times) == 4
    assert len(all_times) == 8
    assert max_in_window(a_times, 0.3) <= 2
    assert max_in_window(all_times, 0.3) <= 3
    assert 0.6 <= elapsed <= 1.4  # 8 requests at 3 per 0.3 s need at least 2 more windows


async def test_rate_limit_and_burst_limit_both_hold(demo: DemoServer) -> None:
    # 2 per 0.3 s lets the third go at ~0.3 s; 3 per 1 s holds the fourth until ~1.0 s
    ep = endpoint("data", f"{demo.url}/data/c", rate_limit=2, burst_limit=3)
    async with orchestrator(ep, rate_limit_window=0.3) as o:
        await run_concurrently(o, 4)
    arrivals = [r.t for r in demo.requests("/data/c")]
    assert len(arrivals) == 4
    assert max_in_window(arrivals, 0.3) == 2
    assert max_in_window(arrivals, 1.0) == 3
    assert 0.3 <= arrivals[2] - arrivals[0] <= 0.6
    assert arrivals[3] - arrivals[0] >= 1.0


async def test_retries_count_against_the_limit(demo: DemoServer) -> None:
    ep = endpoint("down", f"{demo.url}/status/503", retry_count=3, retry_delay=0.0, rate_limit=2)
    async with orchestrator(ep, rate_limit_window=0.3) as o:
        started = time.monotonic()
        await o.execute()
        elapsed = time.monotonic() - started
    arrivals = [r.t for r in demo.requests("/status/503")]
    assert len(arrivals) == 4
    assert max_in_window(arrivals, 0.3) == 2
    assert arrivals[2] - arrivals[0] >= 0.3
    assert 0.3 <= elapsed <= 0.9


async def test_matching_the_servers_limit_never_trips_it(demo: DemoServer) -> None:
    ep = endpoint("lim", f"{demo.url}/limited/k?limit=3&window=0.4", rate_limit=3)
    async with orchestrator(ep, rate_limit_window=0.4) as o:
        results, _ = await run_concurrently(o, 9)
    assert demo.violations == []
    assert all(r == {"lim": {"key": "k", "ok": True}} for r in results)
    assert demo.count("/limited/k") == 9


async def test_without_our_limit_the_server_limit_trips(demo: DemoServer) -> None:
    """The control for the test above: the server's limiter does catch a burst."""
    ep = endpoint("lim", f"{demo.url}/limited/k?limit=3&window=0.4")
    async with orchestrator(ep) as o:
        results, _ = await run_concurrently(o, 9)
    assert len(demo.violations) == 6
    assert sum(r["lim"].get("status") == 429 for r in results) == 6


async def test_rate_limit_waits_show_in_attempt_rows_and_metrics(demo: DemoServer) -> None:
    first = endpoint("first", f"{demo.url}/data/first")
    second = endpoint("second", f"{demo.url}/data/second")
    async with orchestrator(
        first,
        second,
        mode=OrchestrationMode.SEQUENTIAL,
        global_rate_limit=1,
        rate_limit_window=0.25,
    ) as o:
        await o.execute()
    rows = {r["endpoint"]: r for r in o.last_run.attempt_rows()}
    assert rows["first"]["wait_ms"] < 50
    assert 200 <= rows["second"]["wait_ms"] <= 500
    metrics = o.get_metrics()
    assert metrics.endpoints["second"].rate_limit_wait_ms == rows["second"]["wait_ms"]
    assert metrics.rate_limit_wait_ms >= rows["second"]["wait_ms"]
    arrivals = [r.t for r in demo.requests(prefix="/data/")]
    assert arrivals[1] - arrivals[0] >= 0.25


async def test_limits_carry_over_between_executes(demo: DemoServer) -> None:
    ep = endpoint("data", f"{demo.url}/data/d", rate_limit=2)
    async with orchestrator(ep, rate_limit_window=0.3) as o:
        for _ in range(4):
            await o.execute()
    arrivals = [r.t for r in demo.requests("/data/d")]
    assert max_in_window(arrivals, 0.3) == 2
    assert arrivals[2] - arrivals[0] >= 0.3


@pytest.mark.parametrize("shared", [False, True], ids=["in-memory", "redis"])
async def test_a_call_cancelled_while_waiting_for_the_limit_spends_no_budget(
    demo: DemoServer, request: pytest.FixtureRequest, shared: bool
) -> None:
    limiter = request.getfixturevalue("redis_url") if shared else None
    ep = endpoint("data", f"{demo.url}/data/e", rate_limit=1)
    async with orchestrator(ep, rate_limit_window=0.3, limiter=limiter) as o:
        await o.execute()
        waiting = asyncio.create_task(o.execute())
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert o.last_run.records["data"].state is CallState.CANCELLED
        await o.execute()
    arrivals = [r.t for r in demo.requests("/data/e")]
    assert len(arrivals) == 2
    assert 0.3 <= arrivals[1] - arrivals[0] <= 0.6  # not pushed back by the cancelled waiter

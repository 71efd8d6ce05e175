"""Run control: total_timeout, fail_fast, error_threshold, rescue, interruption, concurrency.

Whatever stops a run, every call ends in a recorded terminal state in ``last_run``, calls
that had not started never reach the server, and the orchestrator stays usable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _app_server import serving
from aiohttp import web

from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    CallState,
    CallTimeout,
    ErrorThresholdExceeded,
    FailFastError,
    HTTPStatusError,
    OrchestrationError,
    OrchestrationMode,
    OrchestrationTimeout,
    Run,
)
from apiorch_nb.demo import DemoServer

PARALLEL = OrchestrationMode.PARALLEL
SEQUENTIAL = OrchestrationMode.SEQUENTIAL


def orchestrator(*endpoints: APIEndpoint, **config: Any) -> APIOrchestrator:
    config.setdefault("mode", PARALLEL)
    return APIOrchestrator(APIOrchestrationConfig(endpoints=list(endpoints), **config))


def endpoint(name: str, url: str, **kwargs: Any) -> APIEndpoint:
    kwargs.setdefault("retry_count", 0)
    return APIEndpoint(name, url, **kwargs)


def states(run: Run | None) -> dict[str, CallState]:
    """Every call's state; fails unless each one reached a terminal state."""
    assert run is not None
    out = {name: rec.state for name, rec in run.records.items()}
    assert all(s.terminal for s in out.values()), out
    return out


async def wait_for_arrival(demo: DemoServer, path: str, count: int = 1) -> None:
    deadline = time.monotonic() + 2.0
    while demo.count(path) < count:
        assert time.monotonic() < deadline, f"{path} never reached the server"
        await asyncio.sleep(0.005)


class HangServer:
    """An inline server whose one route never answers and notes when its handler is
    cancelled, i.e. when the client drops the connection."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.abandoned = asyncio.Event()
        self.url = ""

    async def handler(self, request: web.Request) -> web.Response:
        self.arrived.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.abandoned.set()
            raise
        return web.Response()


@pytest.fixture
async def hang_server() -> AsyncIterator[HangServer]:
    srv = HangServer()
    app = web.Application()
    app.router.add_get("/hang", srv.handler)
    async with serving(app, handler_cancellation=True, shutdown_timeout=0.1) as srv.url:
        yield srv


# -- total_timeout --------------------------------------------------------------------------


async def test_total_timeout_raises_promptly_with_finished_results(demo: DemoServer) -> None:
    fast = endpoint("fast", f"{demo.url}/data/fast")
    slow = endpoint("slow", f"{demo.url}/hang")
    async with orchestrator(fast, slow, total_timeout=0.3) as o:
        started = time.monotonic()
        with pytest.raises(OrchestrationTimeout) as info:
            await o.execute()
        elapsed = time.monotonic() - started
    err = info.value
    assert isinstance(err, TimeoutError)
    assert 0.3 <= elapsed <= 0.8
    assert err.results == {"fast": {"source": "fast", "value": 4}}
    assert err.pending == ["slow"]
    assert err.run is o.last_run
    assert o.last_run.error is err
    assert states(o.last_run) == {"fast": CallState.OK, "slow": CallState.CANCELLED}
    assert demo.count("/hang") == 1


async def test_total_timeout_abandons_the_hanging_request(hang_server: HangServer) -> None:
    ep = endpoint("slow", f"{hang_server.url}/hang")
    async with orchestrator(ep, total_timeout=0.2) as o:
        with pytest.raises(OrchestrationTimeout):
            await o.execute()
        assert hang_server.arrived.is_set()
        await asyncio.wait_for(hang_server.abandoned.wait(), 1.0)


async def test_total_timeout_never_starts_the_calls_still_waiting(demo: DemoServer) -> None:
    eps = [
        endpoint("first", f"{demo.url}/data/first"),
        endpoint("slow", f"{demo.url}/delay/1000"),
        endpoint("third", f"{demo.url}/data/third"),
    ]
    async with orchestrator(*eps, mode=SEQUENTIAL, total_timeout=0.2) as o:
        with pytest.raises(OrchestrationTimeout) as info:
            await o.execute()
    assert info.value.pending == ["slow", "third"]
    assert list(info.value.results) == ["first"]
    assert states(o.last_run) == {
        "first": CallState.OK,
        "slow": CallState.CANCELLED,
        "third": CallState.CANCELLED,
    }
    assert demo.count("/data/third") == 0


async def test_a_run_that_ends_in_time_is_not_affected_by_total_timeout(
    demo: DemoServer,
) -> None:
    ep = endpoint("quick", f"{demo.url}/delay/20")
    async with orchestrator(ep, total_timeout=0.2) as o:
        assert await o.execute() == {"quick": {"delayed_ms": 20}}
        await asyncio.sleep(0.25)  # the run's timer is gone: nothing fires later
        assert await o.execute() == {"quick": {"delayed_ms": 20}}


# -- fail_fast ------------------------------------------------------------------------------


async def test_fail_fast_names_the_endpoint_and_cancels_the_rest(demo: DemoServer) -> None:
    eps = [
        endpoint("bad", f"{demo.url}/hang", timeout=0.1),  # fails once slow is in flight
        endpoint("slow", f"{demo.url}/delay/2000"),
        endpoint("after", f"{demo.url}/data/after", depends_on=["slow"]),
    ]
    async with orchestrator(*eps, fail_fast=True) as o:
        started = time.monotonic()
        with pytest.raises(FailFastError) as info:
            await o.execute()
        elapsed = time.monotonic() - started
    err = info.value
    assert isinstance(err, OrchestrationError)
    assert err.endpoint == "bad"
    assert "'bad'" in str(err)
    assert isinstance(err.cause, CallTimeout)
    assert err.results == {
        "bad": {"error": "endpoint 'bad': no complete response within 0.1s", "status": None}
    }
    assert err.run is o.last_run
    assert elapsed < 0.6
    assert states(o.last_run) == {
        "bad": CallState.FAILED,
        "slow": CallState.CANCELLED,
        "after": CallState.CANCELLED,
    }
    assert demo.count("/delay/2000") == 1
    assert demo.count("/data/after") == 0
    metrics = o.get_metrics()
    assert (metrics.failed_requests, metrics.cancelled, metrics.total_requests) == (1, 2, 1)


async def test_fail_fast_carries_results_finished_before_the_failure(demo: DemoServer) -> None:
    eps = [
        endpoint("ok", f"{demo.url}/data/ok"),
        endpoint("bad", f"{demo.url}/status/503"),
        endpoint("later", f"{demo.url}/data/later"),
    ]
    async with orchestrator(*eps, mode=SEQUENTIAL, fail_fast=True) as o:
        with pytest.raises(FailFastError) as info:
            await o.execute()
    assert info.value.results["ok"] == {"source": "ok", "value": 2}
    assert info.value.results["bad"]["status"] == 503
    assert isinstance(info.value.cause, HTTPStatusError)
    assert info.value.cause.status == 503
    assert states(o.last_run)["later"] is CallState.CANCELLED
    assert demo.count("/data/later") == 0


async def test_fail_fast_stops_calls_queued_for_a_slot(demo: DemoServer) -> None:
    """A queued call must not take the slot the failed call frees, even when a pooled
    connection would let it send at once."""
    eps = [endpoint("bad", f"{demo.url}/status/500")]
    eps += [endpoint(f"q{i}", f"{demo.url}/data/q{i}") for i in range(4)]
    async with orchestrator(*eps, max_concurrent=1, fail_fast=True) as o:
        for _ in range(3):  # the later runs reuse pooled connections
            demo.reset()
            with pytest.raises(FailFastError):
                await o.execute()
            assert demo.count(prefix="/data/") == 0
            assert states(o.last_run) == {
                "bad": CallState.FAILED,
                **{f"q{i}": CallState.CANCELLED for i in range(4)},
            }


async def test_without_fail_fast_a_failure_does_not_stop_the_run(demo: DemoServer) -> None:
    eps = [
        endpoint("bad", f"{demo.url}/status/500"),
        endpoint("next", f"{demo.url}/data/next"),
    ]
    async with orchestrator(*eps, mode=SEQUENTIAL) as o:
        result = await o.execute()
    assert result["bad"]["status"] == 500
    assert result["next"] == {"source": "next", "value": 4}


# -- error_threshold ------------------------------------------------------------------------


async def test_error_threshold_stops_once_the_share_is_exceeded(demo: DemoServer) -> None:
    eps = [endpoint(f"f{i}", f"{demo.url}/status/500?n={i}") for i in (1, 2, 3)]
    eps.append(endpoint("ok4", f"{demo.url}/data/ok4"))
    async with orchestrator(*eps, mode=SEQUENTIAL, error_threshold=0.5) as o:
        with pytest.raises(ErrorThresholdExceeded) as info:
            await o.execute()
    err = info.value
    assert err.failed == ["f1", "f2", "f3"]
    assert (err.total, err.threshold) == (4, 0.5)
    assert list(err.results) == ["f1", "f2", "f3"]
    assert states(o.last_run)["ok4"] is CallState.CANCELLED
    assert demo.count("/data/ok4") == 0


async def test_error_threshold_is_not_exceeded_at_exactly_the_share(demo: DemoServer) -> None:
    eps = [endpoint(f"f{i}", f"{demo.url}/status/500?n={i}") for i in (1, 2)]
    eps += [endpoint(f"ok{i}", f"{demo.url}/data/ok{i}") for i in (3, 4)]
    async with orchestrator(*eps, mode=SEQUENTIAL, error_threshold=0.5) as o:
        result = await o.execute()
    assert [r.get("status") for r in result.values()] == [500, 500, None, None]
    assert demo.count(prefix="/data/") == 2


async def test_error_threshold_zero_stops_at_the_first_failure(demo: DemoServer) -> None:
    eps = [
        endpoint("bad", f"{demo.url}/status/502"),
        endpoint("next", f"{demo.url}/data/next"),
    ]
    async with orchestrator(*eps, mode=SEQUENTIAL, error_threshold=0.0) as o:
        with pytest.raises(ErrorThresholdExceeded):
            await o.execute()
    assert demo.count("/data/next") == 0


# -- rescued failures -----------------------------------------------------------------------


async def test_rescued_failures_never_abort_even_with_fail_fast(demo: DemoServer) -> None:
    eps = [
        endpoint("bad", f"{demo.url}/status/500", error_handler=lambda e: {"fallback": True}),
        endpoint("next", f"{demo.url}/data/next"),
    ]
    async with orchestrator(*eps, mode=SEQUENTIAL, fail_fast=True, error_threshold=0.0) as o:
        result = await o.execute()
    assert result == {"bad": {"fallback": True}, "next": {"source": "next", "value": 4}}
    record = o.last_run.records["bad"]
    assert (record.state, record.rescued) == (CallState.FAILED, True)
    assert isinstance(record.error, HTTPStatusError)
    assert o.last_run.ok
    metrics = o.get_metrics()
    assert (metrics.total_requests, metrics.failed_requests) == (2, 1)
    assert metrics.error_types == {"http_500": 1}
    assert metrics.endpoints["bad"].error_rate == 1.0


async def test_an_async_error_handler_rescues_too(demo: DemoServer) -> None:
    async def handler(exc: Exception) -> str:
        await asyncio.sleep(0)
        return f"rescued {type(exc).__name__}"

    ep = endpoint("bad", f"{demo.url}/status/503", error_handler=handler)
    async with orchestrator(ep, fail_fast=True) as o:
        assert await o.execute() == {"bad": "rescued HTTPStatusError"}


async def test_an_error_handler_that_raises_leaves_the_failure_unrescued(
    demo: DemoServer,
) -> None:
    def handler(exc: Exception) -> None:
        raise RuntimeError("handler broke")

    ep = endpoint("bad", f"{demo.url}/status/500", error_handler=handler)
    async with orchestrator(ep, fail_fast=True) as o:
        with pytest.raises(FailFastError) as info:
            await o.execute()
    assert "handler broke" in str(info.value.cause)
    assert info.value.results["bad"]["status"] == 500
    assert not o.last_run.records["bad"].rescued


# -- interruption ---------------------------------------------------------------------------


async def test_cancelling_execute_records_every_call_and_reraises(demo: DemoServer) -> None:
    fast = endpoint("fast", f"{demo.url}/data/fast")
    slow = endpoint("slow", f"{demo.url}/delay/{{ms}}")
    async with orchestrator(fast, slow) as o:
        task = asyncio.create_task(o.execute({"ms": 5000}))
        await wait_for_arrival(demo, "/delay/5000")
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        run = o.last_run
        assert states(run) == {"fast": CallState.OK, "slow": CallState.CANCELLED}
        assert run.results == {"fast": {"source": "fast", "value": 4}}
        assert isinstance(run.error, asyncio.CancelledError)
        # the orchestrator is still usable
        result = await o.execute({"ms": 0})
    assert result == {"fast": {"source": "fast", "value": 4}, "slow": {"delayed_ms": 0}}
    assert states(o.last_run) == {"fast": CallState.OK, "slow": CallState.OK}


async def test_cancelling_during_backoff_records_the_call_cancelled(demo: DemoServer) -> None:
    ep = endpoint("down", f"{demo.url}/status/503", retry_count=3, retry_delay=5.0)
    async with orchestrator(ep) as o:
        task = asyncio.create_task(o.execute())
        await wait_for_arrival(demo, "/status/503")
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert states(o.last_run) == {"down": CallState.CANCELLED}
    assert demo.count("/status/503") == 1


# -- per-endpoint timeout and max_concurrent ------------------------------------------------


async def test_endpoint_timeout_becomes_a_call_timeout_error_record(demo: DemoServer) -> None:
    ep = endpoint("slow", f"{demo.url}/delay/2000", timeout=0.1)
    async with orchestrator(ep) as o:
        started = time.monotonic()
        result = await o.execute()
        elapsed = time.monotonic() - started
    assert result == {
        "slow": {"error": "endpoint 'slow': no complete response within 0.1s", "status": None}
    }
    record = o.last_run.records["slow"]
    assert isinstance(record.error, CallTimeout)
    assert isinstance(record.error, TimeoutError)
    assert record.state is CallState.FAILED
    assert elapsed < 0.6
    assert o.get_metrics().error_types == {"timeout": 1}


async def test_two_thousand_endpoints_within_max_concurrent(demo: DemoServer) -> None:
    eps = [endpoint(f"e{i}", f"{demo.url}/data/e{i}") for i in range(2000)]
    async with orchestrator(*eps, max_concurrent=20) as o:
        result = await o.execute()
    assert len(result) == 2000
    assert result["e1999"] == {"source": "e1999", "value": 5}
    assert set(states(o.last_run).values()) == {CallState.OK}
    assert demo.count(prefix="/data/") == 2000
    metrics = o.get_metrics()
    assert (metrics.total_requests, metrics.failed_requests) == (2000, 0)
    # never more than max_concurrent requests in flight at once
    edges = []
    for rec in o.last_run.records.values():
        (attempt,) = rec.attempts
        edges += [(attempt.sent_at, 1), (attempt.ended_at, -1)]
    in_flight = peak = 0
    for _, delta in sorted(edges, key=lambda e: (e[0], e[1])):
        in_flight += delta
        peak = max(peak, in_flight)
    assert peak <= 20

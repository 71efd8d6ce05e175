"""Circuit breaker: the standalone `CircuitBreaker`, then the per-endpoint breakers in runs.

Standalone tests drive time with an injected clock. Engine tests count what reached the
demo server: an open breaker sends nothing, a half-open one lets exactly one probe through.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    BreakerState,
    CallState,
    CircuitBreaker,
    CircuitOpenError,
    ConfigError,
    FailFastError,
    HTTPStatusError,
    OrchestrationMode,
)
from apiorch_nb.demo import DemoServer


class Clock:
    """A manual monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom


async def afail() -> None:
    raise Boom


def ok(value: Any = "ok") -> Any:
    return value


async def aok(value: Any = "ok") -> Any:
    return value


async def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.threshold):
        with pytest.raises(Boom):
            await breaker.call(fail)
    assert breaker.state is BreakerState.OPEN


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(threshold=3, timeout=30.0, name="svc", clock=clock)


# -- standalone -----------------------------------------------------------------------------


async def test_sync_and_async_callables_pass_through_with_arguments(
    breaker: CircuitBreaker,
) -> None:
    assert await breaker.call(ok, 1) == 1
    assert await breaker.call(aok, value=2) == 2
    assert breaker.state is BreakerState.CLOSED


async def test_exceptions_are_reraised_unchanged_for_sync_and_async(
    breaker: CircuitBreaker,
) -> None:
    with pytest.raises(Boom):
        await breaker.call(fail)
    with pytest.raises(Boom):
        await breaker.call(afail)
    assert breaker.failure_count == 2


async def test_stays_closed_below_the_threshold(breaker: CircuitBreaker) -> None:
    for _ in range(2):
        with pytest.raises(Boom):
            await breaker.call(afail)
    assert breaker.state is BreakerState.CLOSED


async def test_a_success_resets_the_consecutive_failure_count(breaker: CircuitBreaker) -> None:
    for _ in range(2):
        with pytest.raises(Boom):
            await breaker.call(fail)
    await breaker.call(ok)
    assert breaker.failure_count == 0
    for _ in range(2):
        with pytest.raises(Boom):
            await breaker.call(fail)
    assert breaker.state is BreakerState.CLOSED


async def test_opens_at_the_threshold(breaker: CircuitBreaker) -> None:
    await trip(breaker)


async def test_open_refuses_without_calling(breaker: CircuitBreaker) -> None:
    await trip(breaker)
    calls: list[int] = []
    with pytest.raises(CircuitOpenError) as info:
        await breaker.call(lambda: calls.append(1))
    assert calls == []
    assert info.value.endpoint == "svc"
    assert info.value.retry_in == pytest.approx(30.0)
    assert breaker.rejections == 1


async def test_open_turns_half_open_after_the_timeout(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    await trip(breaker)
    clock.advance(29.9)
    assert breaker.state is BreakerState.OPEN
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN


async def test_half_open_admits_exactly_one_probe(breaker: CircuitBreaker, clock: Clock) -> None:
    await trip(breaker)
    clock.advance(30)
    release = asyncio.Event()
    calls: list[str] = []

    async def probe() -> str:
        calls.append("probe")
        await release.wait()
        return "up"

    first = asyncio.create_task(breaker.call(probe))
    await asyncio.sleep(0)  # the probe is in flight
    others = [asyncio.create_task(breaker.call(probe)) for _ in range(5)]
    done = await asyncio.gather(*others, return_exceptions=True)
    assert all(isinstance(r, CircuitOpenError) for r in done)
    assert calls == ["probe"]
    assert breaker.state is BreakerState.HALF_OPEN
    release.set()
    assert await first == "up"
    assert breaker.state is BreakerState.CLOSED


async def test_a_successful_probe_closes(breaker: CircuitBreaker, clock: Clock) -> None:
    await trip(breaker)
    clock.advance(30)
    assert await breaker.call(aok) == "ok"
    assert breaker.state is BreakerState.CLOSED
    assert breaker.failure_count == 0
    assert await breaker.call(ok) == "ok"


async def test_a_failed_probe_reopens_for_a_full_timeout(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    await trip(breaker)
    clock.advance(30)
    with pytest.raises(Boom):
        await breaker.call(afail)
    assert breaker.state is BreakerState.OPEN
    clock.advance(29)
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)
    clock.advance(1)
    assert breaker.state is BreakerState.HALF_OPEN


async def test_a_cancelled_probe_frees_the_probe_slot(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    await trip(breaker)
    clock.advance(30)
    probe = asyncio.create_task(breaker.call(asyncio.sleep, 10))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert await breaker.call(ok) == "ok"
    assert breaker.state is BreakerState.CLOSED


def test_threshold_and_timeout_are_validated() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        CircuitBreaker(threshold=0)
    with pytest.raises(ConfigError, match="timeout"):
        CircuitBreaker(timeout=-1)


def test_repr_shows_state_and_failures(breaker: CircuitBreaker) -> None:
    assert repr(breaker) == "CircuitBreaker(name='svc', state=closed, failures=0/3, timeout=30s)"


# -- in the engine --------------------------------------------------------------------------


def orchestrator(*endpoints: APIEndpoint, **config: Any) -> APIOrchestrator:
    config.setdefault("mode", OrchestrationMode.PARALLEL)
    config.setdefault("circuit_breaker_threshold", 3)
    config.setdefault("circuit_breaker_timeout", 60.0)
    return APIOrchestrator(APIOrchestrationConfig(endpoints=list(endpoints), **config))


def endpoint(url: str, name: str = "svc", **kwargs: Any) -> APIEndpoint:
    kwargs.setdefault("retry_count", 0)
    return APIEndpoint(name, url, **kwargs)


async def test_after_threshold_failures_nothing_more_reaches_the_server(
    demo: DemoServer,
) -> None:
    async with orchestrator(endpoint(f"{demo.url}/status/503")) as o:
        for _ in range(3):
            await o.execute()
        assert demo.count("/status/503") == 3
        assert o.breakers["svc"].state is BreakerState.OPEN
        for _ in range(4):
            result = await o.execute()
            record = o.last_run.records["svc"]
            assert record.state is CallState.CIRCUIT_OPEN
            assert isinstance(record.error, CircuitOpenError)
            assert record.attempts == []
            assert result["svc"]["status"] is None
            assert "circuit open" in result["svc"]["error"]
    assert demo.count("/status/503") == 3
    metrics = o.get_metrics()
    assert metrics.breaker_rejections == 4
    assert metrics.error_types == {"http_503": 3, "circuit_open": 4}


async def test_a_call_counts_once_after_its_retries(demo: DemoServer) -> None:
    ep = endpoint(f"{demo.url}/status/503", retry_count=2, retry_delay=0.0)
    async with orchestrator(ep) as o:
        await o.execute()
        await o.execute()
        assert o.breakers["svc"].state is BreakerState.CLOSED
        assert o.breakers["svc"].failure_count == 2
    assert demo.count("/status/503") == 6


async def test_client_errors_do_not_open_the_breaker(demo: DemoServer) -> None:
    async with orchestrator(endpoint(f"{demo.url}/status/404")) as o:
        for _ in range(5):
            await o.execute()
        assert o.breakers["svc"].state is BreakerState.CLOSED
    assert demo.count("/status/404") == 5


async def test_timeouts_and_429s_count_as_failures(demo: DemoServer) -> None:
    hang = endpoint(f"{demo.url}/hang", name="hang", timeout=0.05)
    busy = endpoint(f"{demo.url}/status/429", name="busy")
    async with orchestrator(hang, busy, circuit_breaker_threshold=2) as o:
        await o.execute()
        await o.execute()
        assert o.breakers["hang"].state is BreakerState.OPEN
        assert o.breakers["busy"].state is BreakerState.OPEN


async def test_breaker_state_lasts_across_executes_and_is_per_endpoint(
    demo: DemoServer,
) -> None:
    bad = endpoint(f"{demo.url}/status/500", name="bad")
    good = endpoint(f"{demo.url}/users/1", name="good")
    async with orchestrator(bad, good, circuit_breaker_threshold=2) as o:
        await o.execute()
        await o.execute()
        result = await o.execute()
    assert o.last_run.records["bad"].state is CallState.CIRCUIT_OPEN
    assert o.last_run.records["good"].state is CallState.OK
    assert result["good"]["id"] == 1
    assert demo.count("/status/500") == 2
    assert demo.count("/users/1") == 3


async def test_half_open_lets_exactly_one_probe_reach_the_server(demo: DemoServer) -> None:
    # fail=2 opens the breaker (threshold 2); the third request (the probe) succeeds
    ep = endpoint(f"{demo.url}/flaky/p?fail=2")
    async with orchestrator(ep, circuit_breaker_threshold=2, circuit_breaker_timeout=0.2) as o:
        await o.execute()
        await o.execute()
        assert o.breakers["svc"].state is BreakerState.OPEN
        await asyncio.sleep(0.25)
        results = await asyncio.gather(*(o.execute() for _ in range(6)))
        assert demo.count("/flaky/p") == 3
        probes = [r["svc"] for r in results if "attempt" in r["svc"]]
        refused = [r["svc"] for r in results if "circuit open" in r["svc"].get("error", "")]
        assert probes == [{"key": "p", "attempt": 3}]
        assert len(refused) == 5
        assert o.breakers["svc"].state is BreakerState.CLOSED
        await o.execute()
    assert demo.count("/flaky/p") == 4


async def test_a_failed_probe_reopens_the_breaker(demo: DemoServer) -> None:
    ep = endpoint(f"{demo.url}/status/503")
    async with orchestrator(ep, circuit_breaker_threshold=2, circuit_breaker_timeout=0.2) as o:
        await o.execute()
        await o.execute()
        await asyncio.sleep(0.25)
        results = await asyncio.gather(*(o.execute() for _ in range(4)))
        assert demo.count("/status/503") == 3
        assert sum(r["svc"]["status"] == 503 for r in results) == 1
        assert o.breakers["svc"].state is BreakerState.OPEN
        await o.execute()
        assert o.last_run.records["svc"].state is CallState.CIRCUIT_OPEN
    assert demo.count("/status/503") == 3


async def test_a_probe_that_times_out_reopens_the_breaker(demo: DemoServer) -> None:
    ep = endpoint(f"{demo.url}/hang", timeout=0.05)
    async with orchestrator(ep, circuit_breaker_threshold=1, circuit_breaker_timeout=0.1) as o:
        await o.execute()
        await asyncio.sleep(0.15)
        await o.execute()
        assert o.breakers["svc"].state is BreakerState.OPEN
    assert demo.count("/hang") == 2


async def test_error_handler_rescues_a_circuit_open_failure(demo: DemoServer) -> None:
    def fallback(exc: Exception) -> dict[str, str]:
        return {"fallback": type(exc).__name__}

    ep = endpoint(f"{demo.url}/status/502", error_handler=fallback)
    async with orchestrator(ep, circuit_breaker_threshold=1) as o:
        first = await o.execute()
        second = await o.execute()
    assert first == {"svc": {"fallback": "HTTPStatusError"}}
    assert second == {"svc": {"fallback": "CircuitOpenError"}}
    record = o.last_run.records["svc"]
    assert record.state is CallState.CIRCUIT_OPEN
    assert record.rescued
    assert demo.count("/status/502") == 1


async def test_circuit_open_with_fail_fast_names_the_endpoint(demo: DemoServer) -> None:
    ep = endpoint(f"{demo.url}/status/503")
    async with orchestrator(ep, circuit_breaker_threshold=1, fail_fast=True) as o:
        with pytest.raises(FailFastError) as first:
            await o.execute()
        with pytest.raises(FailFastError) as second:
            await o.execute()
    assert isinstance(first.value.cause, HTTPStatusError)
    assert second.value.endpoint == "svc"
    assert isinstance(second.value.cause, CircuitOpenError)
    assert demo.count("/status/503") == 1

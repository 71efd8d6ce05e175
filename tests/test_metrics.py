"""Metrics are derived from what the calls did, cumulative across runs, and free when off."""

from __future__ import annotations

import pytest

from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator
from apiorch_nb.demo import DemoServer
from apiorch_nb.metrics import IOMetrics, percentile


def test_iometrics_custom_recording_as_on_the_spec_page() -> None:
    metrics = IOMetrics()
    metrics.record_request("custom_api", latency=150)
    metrics.record_error("custom_api", error_type="timeout")
    assert metrics.total_requests == 2
    assert metrics.success_rate == 50.0  # percent
    assert metrics.error_rate == 0.5  # fraction
    assert metrics.avg_latency == 150.0  # ms
    snap = metrics.snapshot()
    assert snap.endpoints["custom_api"].error_types == {"timeout": 1}


def test_percentile_interpolates() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([10.0], 95) == 10.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(101)), 95) == pytest.approx(95.0)


async def test_get_metrics_counts_calls_retries_errors_and_latency(demo: DemoServer) -> None:
    eps = [
        APIEndpoint(name="ok", url=f"{demo.url}/delay/20"),
        APIEndpoint(name="flaky", url=f"{demo.url}/flaky/m1", params={"fail": 1}, retry_delay=0.01),
        APIEndpoint(name="broken", url=f"{demo.url}/status/500", retry_count=1, retry_delay=0.01),
        APIEndpoint(
            name="missing", url=f"{demo.url}/status/404", error_handler=lambda e: {"fallback": True}
        ),
        APIEndpoint(name="never", url=f"{demo.url}/delay/1", condition=lambda ctx: False),
    ]
    async with APIOrchestrator(APIOrchestrationConfig(endpoints=eps, mode="parallel")) as orch:
        await orch.execute()
        await orch.execute()  # cumulative: everything doubles
        m = orch.get_metrics()
    assert m.total_requests == 8  # 4 calls sent per run (the skipped one is not a request)
    assert m.successful_requests == 4 and m.failed_requests == 4
    assert m.success_rate == 50.0 and m.error_rate == 0.5
    assert m.skipped == 2
    # run 1: flaky fails once then recovers, broken retries once; run 2: only broken retries
    assert m.retries == 3
    assert m.error_types == {"http_500": 2, "http_404": 2}  # the rescued 404 still counts
    assert m.endpoints["ok"].avg_latency >= 20.0
    assert m.p50_latency <= m.p95_latency <= m.p99_latency
    assert set(m.endpoints) == {"ok", "flaky", "broken", "missing", "never"}
    # the counts match what the server saw
    assert demo.count(prefix="/delay/20") == 2
    assert demo.count(prefix="/flaky/m1") == 3
    assert demo.count(prefix="/status/500") == 4


async def test_metrics_disabled_records_nothing(demo: DemoServer) -> None:
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="a", url=f"{demo.url}/delay/1")], metrics_enabled=False
    )
    async with APIOrchestrator(config) as orch:
        await orch.execute()
        assert orch._metrics is None
        assert orch.get_metrics().total_requests == 0
    assert demo.count(prefix="/delay") == 1

"""Every code block of the spec page runs as written; only imports and URLs are changed.

The page is ``api-orchestration-pattern.txt``. Its ``https://...example.com`` URLs become
demo-server routes (``{base}/users``, ``{base}/health/{service}``, ...). Snippets that lean on
names the page never defines (``endpoints``, ``api1``, ``http_client``) get small local
definitions. Each test then checks what the server saw and what came back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from itertools import pairwise
from typing import Any

import aiohttp
import pytest

from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    CallState,
    CircuitBreaker,
    CircuitOpenError,
    ConfigError,
    ErrorThresholdExceeded,
    FailFastError,
    OrchestrationMode,
    create_parallel_aggregator,
    create_sequential_api_chain,
)
from apiorch_nb.breaker import BreakerState
from apiorch_nb.demo import DemoServer, max_in_window
from apiorch_nb.metrics import IOMetrics
from apiorch_nb.ratelimit import InMemoryRateLimiter, RateLimit, RateLimiterConfig

SLACK = 0.06  # "at the same time", against 100-200 ms of server latency


def paths(demo: DemoServer) -> list[str]:
    return [r.path for r in demo.log]


# -- Core Components -----------------------------------------------------------------------


async def test_apiendpoint_snippet(demo: DemoServer) -> None:
    endpoint = APIEndpoint(
        name="user_service",
        url=f"{demo.url}/users",
        method="GET",
        headers={"Authorization": "Bearer token"},
        params={"limit": 100},
        timeout=30.0,
        retry_count=3,
        retry_delay=1.0,
        rate_limit=60,  # 60 requests per minute
        response_parser=lambda r: r.json(),
        depends_on=["auth_service"],  # Dependencies
    )
    auth_service = APIEndpoint(name="auth_service", url=f"{demo.url}/auth")
    async with APIOrchestrator(APIOrchestrationConfig(endpoints=[endpoint, auth_service])) as o:
        result = await o.execute()
    assert paths(demo) == ["/auth", "/users"]  # depends_on put auth_service first
    users = demo.requests("/users")[0]
    assert users.query == {"limit": "100"}
    assert users.headers["Authorization"] == "Bearer token"
    assert result["user_service"]["count"] == 100
    assert len(result["user_service"]["users"]) == 100
    assert "token" not in repr(endpoint).replace("[REDACTED]", "")


def test_orchestration_mode_snippet() -> None:
    members = [
        OrchestrationMode.SEQUENTIAL,  # Execute APIs one after another
        OrchestrationMode.PARALLEL,  # Execute APIs concurrently
        OrchestrationMode.FANOUT,  # One request triggers multiple APIs
        OrchestrationMode.PIPELINE,  # Output of one API feeds into next
        OrchestrationMode.CONDITIONAL,  # Execute based on conditions
        OrchestrationMode.HYBRID,  # Mix of above patterns
    ]
    assert [m.value for m in members] == [
        "sequential",
        "parallel",
        "fanout",
        "pipeline",
        "conditional",
        "hybrid",
    ]
    assert list(OrchestrationMode) == members


async def test_apiorchestrationconfig_snippet(demo: DemoServer) -> None:
    endpoint1, endpoint2, endpoint3 = (
        APIEndpoint(name=f"endpoint{i}", url=f"{demo.url}/users/{i}") for i in (1, 2, 3)
    )
    config = APIOrchestrationConfig(
        endpoints=[endpoint1, endpoint2, endpoint3],
        mode=OrchestrationMode.SEQUENTIAL,
        max_concurrent=10,
        total_timeout=300.0,
        fail_fast=False,
        global_rate_limit=100,  # 100 requests/minute globally
        error_threshold=0.1,  # Max 10% errors
        circuit_breaker_threshold=5,
        circuit_breaker_timeout=60.0,
        cache_ttl=300,  # Cache for 5 minutes
        metrics_enabled=True,
    )
    async with APIOrchestrator(config) as orchestrator:
        result = await orchestrator.execute()
        again = await orchestrator.execute()
        status = orchestrator.limiter.get_status("global")
        metrics = orchestrator.get_metrics()
    assert [r["id"] for r in result.values()] == [1, 2, 3]
    assert again == result
    assert paths(demo) == ["/users/1", "/users/2", "/users/3"]  # the second run was cached
    assert metrics.total_requests == 3
    assert metrics.cache_hits == 3
    (window,) = status.rates
    assert (window.limit, window.interval, window.used) == (100, 60.0, 3)


# -- Basic Usage -----------------------------------------------------------------------------


def test_basic_usage_with_asyncio_run(demo: DemoServer) -> None:
    """A plain (sync) test: ``asyncio.run`` needs a thread with no running loop."""
    # Define endpoints
    user_api = APIEndpoint(name="users", url=f"{demo.url}/users", method="GET")

    posts_api = APIEndpoint(
        name="posts", url=f"{demo.url}/posts", method="GET", depends_on=["users"]
    )

    # Create configuration
    config = APIOrchestrationConfig(
        endpoints=[user_api, posts_api], mode=OrchestrationMode.SEQUENTIAL
    )

    # Create orchestrator
    orchestrator = APIOrchestrator(config)

    # Execute orchestration
    result = asyncio.run(orchestrator.execute({"user_id": 123}))

    assert list(result) == ["users", "posts"]
    assert result["users"]["count"] == 10
    assert len(result["posts"]["posts"]) == 9
    assert paths(demo) == ["/users", "/posts"]
    # The orchestrator works again in a new event loop.
    assert asyncio.run(orchestrator.execute({"user_id": 123})) == result
    assert len(demo.log) == 4


# -- Orchestration Modes ---------------------------------------------------------------------


def three_apis(demo: DemoServer, ms: int, **kwargs: Any) -> list[APIEndpoint]:
    return [
        APIEndpoint(name=n, url=f"{demo.url}/delay/{ms}", params={"who": n}, **kwargs)
        for n in ("api1", "api2", "api3")
    ]


async def test_sequential_execution_snippet(demo: DemoServer) -> None:
    api1, api2, api3 = three_apis(demo, 50)
    config = APIOrchestrationConfig(endpoints=[api1, api2, api3], mode=OrchestrationMode.SEQUENTIAL)
    # Execution order: api1 -> api2 -> api3
    async with APIOrchestrator(config) as orchestrator:
        await orchestrator.execute()
    assert [r.query["who"] for r in demo.log] == ["api1", "api2", "api3"]
    times = [r.t for r in demo.log]
    assert all(b - a >= 0.05 - 0.005 for a, b in pairwise(times))


async def test_parallel_execution_snippet(demo: DemoServer) -> None:
    api1, api2, api3 = three_apis(demo, 150)
    config = APIOrchestrationConfig(
        endpoints=[api1, api2, api3], mode=OrchestrationMode.PARALLEL, max_concurrent=3
    )
    # All APIs called simultaneously
    async with APIOrchestrator(config) as orchestrator:
        result = await orchestrator.execute()
    times = [r.t for r in demo.log]
    assert len(times) == 3
    assert max(times) - min(times) < SLACK
    assert result == {n: {"delayed_ms": 150} for n in ("api1", "api2", "api3")}


async def test_pipeline_execution_snippet(demo: DemoServer) -> None:
    # api1 answers {"user": {...}, "enriched": true}
    api1 = APIEndpoint(name="source", url=f"{demo.url}/enrich", method="POST")
    # Define transformation between APIs
    api2 = APIEndpoint(
        name="enrichment",
        url=f"{demo.url}/users/{{id}}",  # filled from the transformed input
        transform_input=lambda data: {"id": data["user"]["id"], "name": data["user"]["name"]},
    )

    config = APIOrchestrationConfig(endpoints=[api1, api2], mode=OrchestrationMode.PIPELINE)
    async with APIOrchestrator(config) as orchestrator:
        result = await orchestrator.execute({"user": {"id": 2, "name": "User 2"}})
    assert paths(demo) == ["/enrich", "/users/2"]
    assert demo.log[0].json == {"user": {"id": 2, "name": "User 2"}}
    assert result["enrichment"]["name"] == "User 2"


async def test_fanout_execution_snippet(demo: DemoServer) -> None:
    demo.latency_ms = 100
    notification_api = APIEndpoint(
        name="notification", url=f"{demo.url}/notify/payment", method="POST"
    )
    analytics_api = APIEndpoint(name="analytics", url=f"{demo.url}/enrich", method="POST")
    audit_api = APIEndpoint(name="audit", url=f"{demo.url}/echo", method="POST")

    config = APIOrchestrationConfig(
        endpoints=[notification_api, analytics_api, audit_api], mode=OrchestrationMode.FANOUT
    )
    # Single input sent to all APIs
    event = {"event": "order_placed", "order_id": 991, "total": 42.5}
    async with APIOrchestrator(config) as orchestrator:
        result = await orchestrator.execute(event)
    assert sorted(paths(demo)) == ["/echo", "/enrich", "/notify/payment"]
    assert [r.json for r in demo.log] == [event, event, event]
    times = [r.t for r in demo.log]
    assert max(times) - min(times) < SLACK
    assert result["notification"] == {"notified": True, **event}
    assert result["analytics"] == {**event, "enriched": True}
    assert result["audit"]["json"] == event


async def test_conditional_execution_snippet(demo: DemoServer) -> None:
    api1 = APIEndpoint(name="user", url=f"{demo.url}/users/1")
    api2 = APIEndpoint(
        name="premium_service",
        url=f"{demo.url}/data/premium",
        condition=lambda data: data.get("user_type") == "premium",
    )

    config = APIOrchestrationConfig(endpoints=[api1, api2], mode=OrchestrationMode.CONDITIONAL)
    async with APIOrchestrator(config) as orchestrator:
        premium = await orchestrator.execute({"user_type": "premium"})
        basic = await orchestrator.execute({"user_type": "basic"})
        assert orchestrator.last_run is not None
        skipped = orchestrator.last_run.records["premium_service"].state
    assert list(premium) == ["user", "premium_service"]
    assert list(basic) == ["user"]
    assert skipped is CallState.SKIPPED
    assert demo.count("/data/premium") == 1
    assert demo.count("/users/1") == 2


# -- Rate Limiting ---------------------------------------------------------------------------


async def test_global_rate_limiting_snippet(demo: DemoServer) -> None:
    endpoints = [APIEndpoint(name=f"e{i}", url=f"{demo.url}/users/{i}") for i in (1, 2, 3)]
    config = APIOrchestrationConfig(
        endpoints=endpoints,
        global_rate_limit=100,  # 100 requests per minute
        rate_limit_window=60,  # 60 second window
    )
    async with APIOrchestrator(config) as orchestrator:
        await orchestrator.execute()
        status = orchestrator.limiter.get_status("global")
    assert len(demo.log) == 3
    assert status.rates[0].used == 3
    assert status.rates[0].remaining == 97


async def test_per_endpoint_rate_limiting_snippet_holds_the_burst_at_the_server(
    demo: DemoServer,
) -> None:
    endpoint = APIEndpoint(
        name="limited_api",
        url=f"{demo.url}/limited/spec?limit=5&window=1",  # the server allows 5 per second
        rate_limit=10,  # 10 requests per minute
        burst_limit=5,  # Allow burst of 5 requests
    )
    async with APIOrchestrator(APIOrchestrationConfig(endpoints=[endpoint])) as orchestrator:
        started = time.monotonic()
        results = await asyncio.gather(*(orchestrator.execute() for _ in range(7)))
        elapsed = time.monotonic() - started
    assert all(r["limited_api"]["ok"] for r in results)
    times = sorted(r.t for r in demo.log)
    assert len(times) == 7
    assert demo.violations == []
    assert max_in_window(times, 1.0) == 5
    assert times[5] - times[0] >= 1.0 - 0.01  # the sixth waited for the first to age out
    assert elapsed < 2.0


async def test_custom_rate_limiter_snippet(demo: DemoServer) -> None:
    url = f"{demo.url}/limited/custom?limit=10&window=60"

    # Create rate limiter with per-category rates
    config = RateLimiterConfig(
        default_rates=[RateLimit(limit=100, interval=60)],
        categories={
            "limited_api": [RateLimit(limit=10, interval=60)],
        },
    )
    limiter = InMemoryRateLimiter(config)

    async with aiohttp.ClientSession() as http_client:
        # Use in async context
        async def make_request(endpoint_name: str) -> aiohttp.ClientResponse:
            await limiter.acquire(endpoint_name)  # Wait for capacity
            response = await http_client.get(url)
            return response

        responses = await asyncio.gather(*(make_request("limited_api") for _ in range(10)))
        for response in responses:
            assert response.status == 200
            await response.read()
        # An eleventh request waits for capacity that frees only in a minute.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(make_request("limited_api"), 0.1)
        assert demo.count("/limited/custom") == 10
        assert demo.violations == []  # the server's own 10-per-minute limit never tripped
        other = await make_request("other_api")  # default rates apply: not held back
        await other.read()

    assert demo.count("/limited/custom") == 11
    limited = limiter.get_status("limited_api")
    assert (limited.rates[0].limit, limited.rates[0].remaining, limited.waiting) == (10, 0, 0)
    assert limiter.try_acquire("limited_api") is False
    assert limiter.get_status("other_api").rates[0] == (100, 60, 1, 99)


# -- Circuit Breaker -------------------------------------------------------------------------


async def test_circuit_breaker_configuration_snippet(demo: DemoServer) -> None:
    endpoints = [APIEndpoint(name="down", url=f"{demo.url}/status/500", retry_count=0)]
    config = APIOrchestrationConfig(
        endpoints=endpoints,
        circuit_breaker_threshold=5,  # Trip after 5 consecutive failures
        circuit_breaker_timeout=60.0,  # Reset after 60 seconds
    )
    async with APIOrchestrator(config) as orchestrator:
        for _ in range(5):
            assert (await orchestrator.execute())["down"]["status"] == 500
        assert orchestrator.breakers["down"].state is BreakerState.OPEN
        refused = await orchestrator.execute()
        assert orchestrator.last_run is not None
        state = orchestrator.last_run.records["down"].state
        metrics = orchestrator.get_metrics()
    assert demo.count("/status/500") == 5  # the sixth call sent nothing
    assert state is CallState.CIRCUIT_OPEN
    assert refused["down"]["status"] is None
    assert "circuit open" in refused["down"]["error"]
    assert metrics.error_types == {"http_500": 5, "circuit_open": 1}
    assert metrics.breaker_rejections == 1


async def test_custom_circuit_breaker_snippet_with_an_async_function(demo: DemoServer) -> None:
    breaker = CircuitBreaker(threshold=3, timeout=30.0)

    async with aiohttp.ClientSession() as session:

        async def api_function(code: int, who: str) -> Any:
            async with session.get(f"{demo.url}/status/{code}", params={"who": who}) as resp:
                if resp.status >= 500:
                    raise RuntimeError(f"HTTP {resp.status}")
                return await resp.json()

        arg1, arg2 = 503, "async"

        async def protected_call() -> Any:
            return await breaker.call(api_function, arg1, arg2)

        for _ in range(3):
            with pytest.raises(RuntimeError, match="HTTP 503"):  # re-raised unchanged
                await protected_call()
        assert breaker.state is BreakerState.OPEN
        with pytest.raises(CircuitOpenError):
            await protected_call()
        assert demo.count("/status/503") == 3  # the refused call sent nothing

        healthy = CircuitBreaker(threshold=3, timeout=30.0)
        assert await healthy.call(api_function, 200, "ok") == {"status": 200}
        assert healthy.state is BreakerState.CLOSED


async def test_custom_circuit_breaker_snippet_with_a_sync_function(demo: DemoServer) -> None:
    breaker = CircuitBreaker(threshold=3, timeout=30.0)

    def api_function(name: str, suffix: str) -> Any:
        with urllib.request.urlopen(f"{demo.url}/data/{name}{suffix}", timeout=5) as resp:
            return json.loads(resp.read())

    arg1, arg2 = "abc", "def"

    async def protected_call() -> Any:
        return await breaker.call(api_function, arg1, arg2)

    assert await protected_call() == {"source": "abcdef", "value": 6}
    assert breaker.state is BreakerState.CLOSED

    def broken(a: int, b: int) -> int:
        raise ZeroDivisionError(a / b)

    for _ in range(3):
        with pytest.raises(ZeroDivisionError):
            await breaker.call(broken, 1, 0)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        await protected_call()
    assert demo.count("/data/abcdef") == 1


# -- Error Handling --------------------------------------------------------------------------


async def test_error_threshold_snippet_with_fail_fast(demo: DemoServer) -> None:
    endpoints = [
        APIEndpoint(name="ok", url=f"{demo.url}/users/1"),
        APIEndpoint(name="broken", url=f"{demo.url}/status/404"),
        APIEndpoint(name="never", url=f"{demo.url}/users/2"),
    ]
    config = APIOrchestrationConfig(
        endpoints=endpoints,
        error_threshold=0.1,  # Stop if >10% errors
        fail_fast=True,  # Stop on first error
    )
    orchestrator = APIOrchestrator(config)
    with pytest.raises(FailFastError) as info:
        await orchestrator.execute()
    await orchestrator.close()
    assert info.value.endpoint == "broken"
    assert list(info.value.results) == ["ok", "broken"]
    assert paths(demo) == ["/users/1", "/status/404"]


async def test_error_threshold_snippet_alone_stops_past_ten_percent(demo: DemoServer) -> None:
    endpoints = [
        APIEndpoint(
            name=f"e{i}", url=f"{demo.url}/status/404" if i in (2, 5) else f"{demo.url}/users/1"
        )
        for i in range(10)
    ]
    config = APIOrchestrationConfig(endpoints=endpoints, error_threshold=0.1)
    async with APIOrchestrator(config) as orchestrator:
        with pytest.raises(ErrorThresholdExceeded) as info:
            await orchestrator.execute()
    # one failure in ten is exactly 10% (allowed); the second is past it
    assert info.value.failed == ["e2", "e5"]
    assert len(demo.log) == 6
    assert list(info.value.results) == [f"e{i}" for i in range(6)]


async def test_per_endpoint_error_handler_snippet(demo: DemoServer) -> None:
    endpoint = APIEndpoint(
        name="api",
        url=f"{demo.url}/status/404",
        error_handler=lambda e: {"error": str(e), "fallback": "default_value"},
    )
    async with APIOrchestrator(APIOrchestrationConfig(endpoints=[endpoint])) as orchestrator:
        result = await orchestrator.execute()
        assert orchestrator.last_run is not None
        record = orchestrator.last_run.records["api"]
        metrics = orchestrator.get_metrics()
    assert result["api"]["fallback"] == "default_value"
    assert result["api"]["error"].startswith("endpoint 'api': HTTP 404")
    assert record.rescued is True
    assert record.state is CallState.FAILED
    assert metrics.failed_requests == 1  # rescued, but still an error in the metrics
    assert demo.count("/status/404") == 1  # a 404 is not retried


async def test_retry_configuration_snippet(demo: DemoServer) -> None:
    endpoint = APIEndpoint(
        name="api",
        url=f"{demo.url}/flaky/spec?fail=1&status=503",
        retry_count=3,
        retry_delay=1.0,  # Exponential backoff
        retry_on=[500, 502, 503, 504],  # Retry on these status codes
    )
    async with APIOrchestrator(APIOrchestrationConfig(endpoints=[endpoint])) as orchestrator:
        result = await orchestrator.execute()
        assert orchestrator.last_run is not None
        rows = orchestrator.last_run.attempt_rows()
    assert result["api"] == {"key": "spec", "attempt": 2}
    first, second = demo.requests("/flaky/spec")
    assert 1.0 <= second.t - first.t < 1.1 + SLACK  # retry_delay plus at most 10% jitter
    assert [row["status"] for row in rows] == [503, 200]


async def test_retry_configuration_snippet_does_not_retry_other_statuses(
    demo: DemoServer,
) -> None:
    endpoint = APIEndpoint(
        name="api",
        url=f"{demo.url}/status/429",
        retry_count=3,
        retry_delay=1.0,
        retry_on=[500, 502, 503, 504],  # 429 is not listed here
    )
    async with APIOrchestrator(APIOrchestrationConfig(endpoints=[endpoint])) as orchestrator:
        result = await orchestrator.execute()
    assert result["api"]["status"] == 429
    assert demo.count("/status/429") == 1


# -- Caching ---------------------------------------------------------------------------------


async def test_response_caching_and_invalidation_snippets(demo: DemoServer) -> None:
    endpoints = [
        APIEndpoint(name="user_service", url=f"{demo.url}/users/1"),
        APIEndpoint(name="posts", url=f"{demo.url}/posts", params={"user_id": 1}),
    ]
    config = APIOrchestrationConfig(
        endpoints=endpoints,
        cache_ttl=300,  # Cache for 5 minutes
        cache_key_generator=lambda ep: f"{ep.name}:{ep.params}",
    )
    orchestrator = APIOrchestrator(config)

    first = await orchestrator.execute()
    assert await orchestrator.execute() == first
    assert orchestrator.last_run is not None
    assert {r.state for r in orchestrator.last_run.records.values()} == {CallState.CACHED}
    assert (demo.count("/users/1"), demo.count("/posts")) == (1, 1)

    # Clear cache for specific endpoint
    orchestrator.clear_cache("user_service")
    await orchestrator.execute()
    assert (demo.count("/users/1"), demo.count("/posts")) == (2, 1)

    # Clear all cache
    orchestrator.clear_all_cache()
    await orchestrator.execute()
    assert (demo.count("/users/1"), demo.count("/posts")) == (3, 2)

    with pytest.raises(ConfigError, match="no endpoint named 'nope'"):
        orchestrator.clear_cache("nope")
    assert orchestrator.get_metrics().cache_hits == 3
    await orchestrator.close()


# -- Response Handling -----------------------------------------------------------------------


async def test_response_parsing_snippet(demo: DemoServer) -> None:
    endpoint = APIEndpoint(
        name="api",
        url=f"{demo.url}/enrich",  # answers the posted body plus "enriched"
        method="POST",
        body={"data": {"user_id": 7, "full_name": "Ada Lovelace", "extra": 1}},
        response_parser=lambda r: r.json()["data"],
        transform_output=lambda data: {"id": data["user_id"], "name": data["full_name"]},
    )
    async with APIOrchestrator(APIOrchestrationConfig(endpoints=[endpoint])) as orchestrator:
        result = await orchestrator.execute()
    assert result == {"api": {"id": 7, "name": "Ada Lovelace"}}


async def test_result_merging_snippet(demo: DemoServer) -> None:
    endpoints = [
        APIEndpoint(name="user", url=f"{demo.url}/users/3"),
        APIEndpoint(name="analytics", url=f"{demo.url}/analytics/users/3"),
        APIEndpoint(name="data", url=f"{demo.url}/data/xyz"),
    ]

    def merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
        """Merge results from parallel APIs."""
        merged: dict[str, Any] = {}
        for result in results:
            merged.update(result)
        return merged

    config = APIOrchestrationConfig(
        endpoints=endpoints, mode=OrchestrationMode.PARALLEL, result_merger=merge_results
    )
    async with APIOrchestrator(config) as orchestrator:
        merged = await orchestrator.execute()
        assert orchestrator.last_run is not None
        per_endpoint = orchestrator.last_run.results
    assert merged == {
        "id": 3,
        "name": "User 3",
        "email": "user3@example.com",
        "user_type": "premium",
        "user_id": 3,
        "page_views": 100 + 3 * 37 % 900,
        "sessions": 1 + 3 * 7 % 50,
        "source": "xyz",
        "value": 3,
    }
    assert list(per_endpoint) == ["user", "analytics", "data"]


# -- Monitoring and Metrics ------------------------------------------------------------------


async def test_enable_metrics_snippet(
    demo: DemoServer, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    endpoints = [
        APIEndpoint(
            name=f"slow{i}",
            url=f"{demo.url}/delay/50",
            headers={"Authorization": "Bearer very-secret"},
        )
        for i in range(3)
    ] + [APIEndpoint(name="missing", url=f"{demo.url}/status/404")]
    data = {"q": 1}
    caplog.set_level(logging.INFO, logger="apiorch_nb")

    config = APIOrchestrationConfig(
        endpoints=endpoints, metrics_enabled=True, log_requests=True, log_responses=True
    )

    orchestrator = APIOrchestrator(config)
    result = await orchestrator.execute(data)

    # Access metrics
    metrics = orchestrator.get_metrics()
    print(f"Total requests: {metrics.total_requests}")
    print(f"Success rate: {metrics.success_rate}%")
    print(f"Average latency: {metrics.avg_latency}ms")

    await orchestrator.close()
    assert result["missing"]["status"] == 404
    assert metrics.total_requests == 4
    assert metrics.successful_requests == 3
    assert metrics.success_rate == 75.0
    assert metrics.error_rate == 0.25
    assert 50 <= metrics.avg_latency < 500
    assert metrics.p50_latency >= 50
    assert metrics.endpoints["missing"].error_types == {"http_404": 1}
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "Total requests: 4"
    assert printed[1] == "Success rate: 75.0%"
    assert printed[2] == f"Average latency: {metrics.avg_latency}ms"

    messages = [r.getMessage() for r in caplog.records if r.name == "apiorch_nb"]
    assert sum(m.startswith("→") for m in messages) == 4
    assert sum(m.startswith("←") for m in messages) == 4
    assert "very-secret" not in caplog.text
    assert demo.requests("/delay/50")[0].headers["Authorization"] == "Bearer very-secret"


def test_custom_metrics_snippet() -> None:
    metrics = IOMetrics()

    # Track custom metrics
    metrics.record_request("custom_api", latency=150)
    metrics.record_error("custom_api", error_type="timeout")

    assert metrics.total_requests == 2
    assert metrics.success_rate == 50.0
    assert metrics.error_rate == 0.5
    assert metrics.avg_latency == 150.0
    snapshot = metrics.snapshot()
    assert snapshot.endpoints["custom_api"].error_types == {"timeout": 1}
    assert snapshot.endpoints["custom_api"].p99_latency == 150.0
    assert repr(metrics) == "IOMetrics(total_requests=2, success_rate=50.0%, avg_latency=150.0ms)"


# -- Factory Functions -----------------------------------------------------------------------


async def test_sequential_api_chain_factory_snippet(demo: DemoServer) -> None:
    orchestrator = create_sequential_api_chain(
        endpoints=[
            ("auth", f"{demo.url}/auth"),
            ("user", f"{demo.url}/user"),
            ("profile", f"{demo.url}/profile"),
        ],
        headers={"API-Key": "secret"},
    )

    result = await orchestrator.execute({"username": "user@example.com"})

    assert paths(demo) == ["/auth", "/user", "/profile"]
    assert [r.headers["API-Key"] for r in demo.log] == ["secret"] * 3
    assert [r.seq for r in demo.log] == [1, 2, 3]
    assert list(result) == ["auth", "user", "profile"]
    assert result["profile"]["plan"] == "premium"
    assert orchestrator.config.mode is OrchestrationMode.SEQUENTIAL
    assert "secret" not in repr(orchestrator.config)


async def test_parallel_aggregator_factory_snippet(demo: DemoServer) -> None:
    demo.latency_ms = 100
    orchestrator = create_parallel_aggregator(
        endpoints=[
            ("service1", f"{demo.url}/data/service1"),
            ("service2", f"{demo.url}/data/service2"),
            ("service3", f"{demo.url}/data/service3"),
        ],
        max_concurrent=3,
        timeout=10.0,
    )

    aggregated = await orchestrator.execute()

    assert aggregated == {f"service{i}": {"source": f"service{i}", "value": 8} for i in (1, 2, 3)}
    times = [r.t for r in demo.log]
    assert len(times) == 3
    assert max(times) - min(times) < SLACK
    assert orchestrator.config.mode is OrchestrationMode.PARALLEL
    assert orchestrator.config.max_concurrent == 3
    assert [ep.timeout for ep in orchestrator.endpoints] == [10.0, 10.0, 10.0]


# -- Complete Examples -----------------------------------------------------------------------


def test_example_1_user_data_enrichment(demo: DemoServer) -> None:
    demo.latency_ms = 100
    base = demo.url

    async def enrich_user_data(user_id: int) -> Any:
        # Define API endpoints
        user_api = APIEndpoint(
            name="user",
            url=f"{base}/users/{user_id}",
            method="GET",
            response_parser=lambda r: r.json(),
        )

        posts_api = APIEndpoint(
            name="posts",
            url=f"{base}/users/{user_id}/posts",
            method="GET",
            response_parser=lambda r: r.json()["posts"],
        )

        analytics_api = APIEndpoint(
            name="analytics",
            url=f"{base}/analytics/users/{user_id}",
            method="GET",
            rate_limit=10,  # Limited API
        )

        # Configure orchestration
        config = APIOrchestrationConfig(
            endpoints=[user_api, posts_api, analytics_api],
            mode=OrchestrationMode.PARALLEL,
            max_concurrent=3,
            fail_fast=False,  # Continue even if one fails
            cache_ttl=600,  # Cache for 10 minutes
            result_merger=lambda results: {
                "user": results[0],
                "posts": results[1],
                "analytics": results[2] if len(results) > 2 else None,
            },
        )

        # Execute orchestration
        orchestrator = APIOrchestrator(config)
        enriched_data = await orchestrator.execute({"user_id": user_id})

        return enriched_data

    # Run enrichment
    result = asyncio.run(enrich_user_data(123))

    assert result["user"] == {
        "id": 123,
        "name": "User 123",
        "email": "user123@example.com",
        "user_type": "premium",
    }
    assert [p["id"] for p in result["posts"]] == [1231, 1232, 1233]
    assert result["analytics"] == {
        "user_id": 123,
        "page_views": 100 + 123 * 37 % 900,
        "sessions": 1 + 123 * 7 % 50,
    }
    assert sorted(paths(demo)) == ["/analytics/users/123", "/users/123", "/users/123/posts"]
    times = [r.t for r in demo.log]
    assert max(times) - min(times) < SLACK  # PARALLEL: the three calls overlapped


async def process_payment(base: str, payment_data: dict[str, Any]) -> Any:
    """Example 2 from the page, URLs pointed at the demo server."""
    # Validation API
    validate_api = APIEndpoint(
        name="validate",
        url=f"{base}/payment/validate",
        method="POST",
        body=payment_data,
        timeout=5.0,
    )

    # Fraud check API
    fraud_api = APIEndpoint(
        name="fraud_check",
        url=f"{base}/fraud/check",
        method="POST",
        transform_input=lambda data: {"amount": data["amount"], "card_hash": data["card_token"]},
        condition=lambda data: data["amount"] > 100,  # Only for large amounts
    )

    # Payment processor
    payment_api = APIEndpoint(
        name="process",
        url=f"{base}/processor/charge",
        method="POST",
        retry_count=1,  # Limited retries for payments
        depends_on=["validate", "fraud_check"],
    )

    # Notification service
    notify_api = APIEndpoint(
        name="notify",
        url=f"{base}/notify/payment",
        method="POST",
        depends_on=["process"],
    )

    # Configure pipeline
    config = APIOrchestrationConfig(
        endpoints=[validate_api, fraud_api, payment_api, notify_api],
        mode=OrchestrationMode.PIPELINE,
        fail_fast=True,  # Stop on any failure
        circuit_breaker_threshold=3,
        total_timeout=30.0,
    )

    orchestrator = APIOrchestrator(config)
    result = await orchestrator.execute(payment_data)

    return result


async def test_example_2_payment_pipeline_large_amount_is_fraud_checked(
    demo: DemoServer,
) -> None:
    payment = {"amount": 250, "card_token": "tok_visa", "currency": "USD"}
    result = await process_payment(demo.url, payment)

    assert paths(demo) == [
        "/payment/validate",
        "/fraud/check",
        "/processor/charge",
        "/notify/payment",
    ]
    validate, fraud, charge, notify = (r.json for r in demo.log)
    assert validate == payment
    assert fraud == {"amount": 250, "card_hash": "tok_visa"}
    assert charge == {"approved": True, "risk_score": 0.1, "amount": 250, "card_hash": "tok_visa"}
    assert notify == {"charged": True, "transaction_id": "txn-3", **charge}
    assert list(result) == ["validate", "fraud_check", "process", "notify"]
    assert result["notify"] == {"notified": True, **notify}


async def test_example_2_payment_pipeline_small_amount_skips_fraud_check(
    demo: DemoServer,
) -> None:
    payment = {"amount": 40, "card_token": "tok_visa", "currency": "USD"}
    result = await process_payment(demo.url, payment)

    assert paths(demo) == ["/payment/validate", "/processor/charge", "/notify/payment"]
    validate, charge, notify = (r.json for r in demo.log)
    assert validate == payment
    assert charge == {"valid": True, **payment}  # the skipped step passed its input on
    assert notify == {"charged": True, "transaction_id": "txn-2", "valid": True, **payment}
    assert list(result) == ["validate", "process", "notify"]


async def test_example_2_payment_pipeline_invalid_payment_stops_at_validation(
    demo: DemoServer,
) -> None:
    with pytest.raises(FailFastError) as info:
        await process_payment(demo.url, {"amount": -5, "card_token": "tok_visa"})
    assert info.value.endpoint == "validate"
    assert "HTTP 422" in str(info.value)
    assert paths(demo) == ["/payment/validate"]


async def test_example_3_microservices_health_check(demo: DemoServer) -> None:
    base = demo.url
    demo.down.update({"payment", "shipping"})

    async def health_check_all_services() -> dict[str, Any]:
        services = [
            "auth",
            "user",
            "payment",
            "inventory",
            "shipping",
            "notification",
            "analytics",
        ]

        # Create health check endpoints
        endpoints = [
            APIEndpoint(
                name=service,
                url=f"{base}/health/{service}",
                method="GET",
                timeout=2.0,
                retry_count=0,  # No retries for health checks
                error_handler=lambda e: {"status": "down", "error": str(e)},
            )
            for service in services
        ]

        # Configure parallel health checks
        config = APIOrchestrationConfig(
            endpoints=endpoints,
            mode=OrchestrationMode.PARALLEL,
            max_concurrent=10,
            total_timeout=5.0,
            fail_fast=False,  # Check all services
            result_merger=lambda results: {
                endpoints[i].name: results[i] for i in range(len(results))
            },
        )

        orchestrator = APIOrchestrator(config)
        health_status = await orchestrator.execute({})

        # Analyze results
        healthy = sum(1 for s in health_status.values() if s.get("status") == "ok")
        total = len(health_status)

        return {
            "healthy": healthy,
            "total": total,
            "percentage": (healthy / total) * 100,
            "services": health_status,
        }

    report = await health_check_all_services()

    assert report["healthy"] == 5
    assert report["total"] == 7
    assert report["percentage"] == pytest.approx(500 / 7)
    services = report["services"]
    assert list(services) == [
        "auth",
        "user",
        "payment",
        "inventory",
        "shipping",
        "notification",
        "analytics",
    ]
    for name in ("payment", "shipping"):
        assert services[name]["status"] == "down"
        assert services[name]["error"].startswith(f"endpoint '{name}': HTTP 503")
    assert services["auth"] == {"status": "ok", "service": "auth"}
    assert sorted(paths(demo)) == sorted(f"/health/{s}" for s in services)  # once each


# -- Best Practices --------------------------------------------------------------------------


async def test_best_practice_configure_timeouts(demo: DemoServer) -> None:
    # Set reasonable timeouts
    endpoint = APIEndpoint(
        name="api",
        url=f"{demo.url}/users/1",
        timeout=10.0,  # Endpoint timeout
    )

    config = APIOrchestrationConfig(
        endpoints=[endpoint],
        total_timeout=30.0,  # Overall timeout
    )
    async with APIOrchestrator(config) as orchestrator:
        assert (await orchestrator.execute())["api"]["id"] == 1


async def test_best_practice_handle_failures_gracefully(demo: DemoServer) -> None:
    # Provide fallbacks
    endpoint = APIEndpoint(
        name="api",
        url=f"{demo.url}/status/404",
        error_handler=lambda e: {"fallback": "default_value"},
    )

    # Use circuit breakers
    config = APIOrchestrationConfig(circuit_breaker_threshold=5, circuit_breaker_timeout=60.0)

    async with APIOrchestrator(config) as orchestrator:
        assert await orchestrator.execute() == {}
    with_endpoint = APIOrchestrationConfig(
        endpoints=[endpoint], circuit_breaker_threshold=5, circuit_breaker_timeout=60.0
    )
    async with APIOrchestrator(with_endpoint) as orchestrator:
        assert await orchestrator.execute() == {"api": {"fallback": "default_value"}}
    assert demo.count("/status/404") == 1


async def test_best_practice_monitor_performance(demo: DemoServer) -> None:
    # Enable metrics
    config = APIOrchestrationConfig(metrics_enabled=True, log_requests=True)
    assert config.endpoints == []

    endpoints = [APIEndpoint(name=f"ok{i}", url=f"{demo.url}/users/{i}") for i in (1, 2, 3)]
    endpoints.append(APIEndpoint(name="bad", url=f"{demo.url}/status/404"))
    orchestrator = APIOrchestrator(
        APIOrchestrationConfig(endpoints=endpoints, metrics_enabled=True, log_requests=True)
    )
    await orchestrator.execute()
    await orchestrator.close()
    alerts: list[float] = []

    def alert_ops_team() -> None:
        alerts.append(metrics.error_rate)

    # Review metrics regularly
    metrics = orchestrator.get_metrics()
    if metrics.error_rate > 0.05:  # >5% errors
        alert_ops_team()

    assert alerts == [0.25]

"""The six orchestration modes, judged by what the demo server saw and when.

Each request carries ``?who=<endpoint name>`` so a test can find its arrival in the server's
log. Server arrival times (`RequestRecord.t`) and the client's clock are both
`time.monotonic()`. Timing bounds are relative to the routes' own latency and generous.
"""

from __future__ import annotations

import time
from itertools import pairwise
from typing import Any

import pytest

from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    CallState,
    FailFastError,
    OrchestrationMode,
)
from apiorch_nb.demo import DemoServer, RequestRecord, max_in_window

FAST: dict[str, Any] = {"retry_count": 0, "timeout": 5.0}
#: Slack for "happened at the same time" and "right after": small against 100-200 ms calls.
SLACK = 0.06


def delayed(demo: DemoServer, name: str, ms: int, **kwargs: Any) -> APIEndpoint:
    """An endpoint whose response takes `ms` at the server, tagged with its name."""
    return APIEndpoint(
        name=name, url=f"{demo.url}/delay/{ms}", params={"who": name}, **{**FAST, **kwargs}
    )


def failing(demo: DemoServer, name: str, status: int = 500, **kwargs: Any) -> APIEndpoint:
    return APIEndpoint(
        name=name, url=f"{demo.url}/status/{status}", params={"who": name}, **{**FAST, **kwargs}
    )


def seen(demo: DemoServer) -> dict[str, RequestRecord]:
    """The server's request for each endpoint (by its ``who`` tag)."""
    out: dict[str, RequestRecord] = {}
    for r in demo.log:
        who = r.query.get("who")
        if who is not None:
            assert who not in out, f"{who} was requested twice"
            out[who] = r
    return out


def order(demo: DemoServer) -> list[str]:
    return [r.query["who"] for r in demo.log if "who" in r.query]


def max_overlap(starts: list[float], duration: float) -> int:
    """Most requests in flight at the server at once, each lasting `duration` from arrival."""
    return max(sum(1 for s in starts if s <= t < s + duration) for t in starts)


async def execute(
    endpoints: list[APIEndpoint], mode: OrchestrationMode | str, data: Any = None, **config: Any
) -> tuple[Any, APIOrchestrator, float]:
    orchestrator = APIOrchestrator(APIOrchestrationConfig(endpoints=endpoints, mode=mode, **config))
    async with orchestrator:
        started = time.monotonic()
        result = await orchestrator.execute(data)
        return result, orchestrator, time.monotonic() - started


def states(orchestrator: APIOrchestrator) -> dict[str, CallState]:
    assert orchestrator.last_run is not None
    return {name: r.state for name, r in orchestrator.last_run.records.items()}


# -- every mode ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(OrchestrationMode))
async def test_empty_endpoint_list_returns_an_empty_dict(demo: DemoServer, mode: str) -> None:
    result, orchestrator, _ = await execute([], mode, {"x": 1})
    assert result == {}
    assert demo.log == []
    assert orchestrator.last_run is not None and orchestrator.last_run.records == {}


@pytest.mark.parametrize("mode", list(OrchestrationMode))
async def test_condition_is_honoured_in_every_mode(demo: DemoServer, mode: str) -> None:
    endpoints = [
        delayed(demo, "yes", 0, condition=lambda ctx: ctx["go"]),
        delayed(demo, "no", 0, condition=lambda ctx: not ctx["go"]),
    ]
    result, orchestrator, _ = await execute(endpoints, mode, {"go": True})
    assert list(result) == ["yes"]
    assert order(demo) == ["yes"]
    assert states(orchestrator) == {"yes": CallState.OK, "no": CallState.SKIPPED}


# -- SEQUENTIAL ------------------------------------------------------------------------------


async def test_sequential_calls_arrive_in_list_order_and_never_overlap(demo: DemoServer) -> None:
    endpoints = [delayed(demo, name, 80) for name in ("a", "b", "c", "d")]
    result, _, elapsed = await execute(endpoints, OrchestrationMode.SEQUENTIAL)
    assert list(result) == ["a", "b", "c", "d"]
    assert order(demo) == ["a", "b", "c", "d"]
    times = [r.t for r in demo.log]
    for earlier, later in pairwise(times):
        assert later - earlier >= 0.08 - 0.005  # the next one only after the previous answered
    assert max_overlap(times, 0.08) == 1
    assert elapsed >= 4 * 0.08


async def test_depends_on_reorders_a_sequential_list(demo: DemoServer) -> None:
    endpoints = [
        delayed(demo, "posts", 20, depends_on=["users"]),
        delayed(demo, "users", 20),
        delayed(demo, "extra", 20),
    ]
    result, _, _ = await execute(endpoints, OrchestrationMode.SEQUENTIAL)
    assert order(demo) == ["users", "posts", "extra"]
    assert list(result) == ["posts", "users", "extra"]  # results stay in config order
    times = [r.t for r in demo.log]
    assert max_overlap(times, 0.02) == 1


async def test_sequential_failure_does_not_stop_the_next_endpoint(demo: DemoServer) -> None:
    endpoints = [failing(demo, "bad", 500), delayed(demo, "good", 10)]
    result, orchestrator, _ = await execute(endpoints, "sequential", fail_fast=False)
    assert order(demo) == ["bad", "good"]
    assert result["bad"]["status"] == 500
    assert "HTTP 500" in result["bad"]["error"]
    assert result["good"] == {"delayed_ms": 10}
    assert states(orchestrator) == {"bad": CallState.FAILED, "good": CallState.OK}


async def test_sequential_failure_with_fail_fast_sends_nothing_more(demo: DemoServer) -> None:
    endpoints = [failing(demo, "bad", 503), delayed(demo, "never", 10)]
    orchestrator = APIOrchestrator(
        APIOrchestrationConfig(endpoints=endpoints, mode="sequential", fail_fast=True)
    )
    async with orchestrator:
        with pytest.raises(FailFastError) as info:
            await orchestrator.execute()
    assert info.value.endpoint == "bad"
    assert order(demo) == ["bad"]
    assert states(orchestrator)["never"] is CallState.CANCELLED


async def test_sequential_dependant_of_a_failed_endpoint_is_skipped(demo: DemoServer) -> None:
    endpoints = [
        failing(demo, "users", 500),
        delayed(demo, "posts", 0, depends_on=["users"]),
        delayed(demo, "other", 0),
    ]
    result, orchestrator, _ = await execute(endpoints, "sequential")
    assert order(demo) == ["users", "other"]
    assert list(result) == ["users", "other"]
    assert orchestrator.last_run is not None
    posts = orchestrator.last_run.records["posts"]
    assert posts.state is CallState.SKIPPED
    assert posts.reason == "dependency 'users' failed"


# -- PARALLEL --------------------------------------------------------------------------------


async def test_parallel_calls_overlap(demo: DemoServer) -> None:
    endpoints = [delayed(demo, f"p{i}", 200) for i in range(4)]
    result, _, elapsed = await execute(endpoints, OrchestrationMode.PARALLEL)
    assert list(result) == ["p0", "p1", "p2", "p3"]
    times = [r.t for r in demo.log]
    assert len(times) == 4
    assert max(times) - min(times) < SLACK  # all four were in flight together
    assert max_overlap(times, 0.2) == 4
    assert elapsed < 2 * 0.2


async def test_max_concurrent_caps_requests_in_flight_exactly(demo: DemoServer) -> None:
    endpoints = [delayed(demo, f"p{i}", 100) for i in range(6)]
    _, _, elapsed = await execute(endpoints, OrchestrationMode.PARALLEL, max_concurrent=2)
    times = sorted(r.t for r in demo.log)
    assert len(times) == 6
    assert max_overlap(times, 0.1) == 2  # never more than two, and the two slots were used
    # three waves of two: each wave starts once the previous one has answered
    for wave in range(3):
        first, second = times[2 * wave], times[2 * wave + 1]
        assert second - first < SLACK
        if wave:
            assert first - times[2 * wave - 2] >= 0.1 - 0.005
    assert 0.3 - 0.01 <= elapsed < 0.3 * 2


async def test_parallel_results_keep_config_order_not_finish_order(demo: DemoServer) -> None:
    endpoints = [delayed(demo, "slow", 150), delayed(demo, "fast", 0)]
    result, orchestrator, _ = await execute(endpoints, "parallel")
    assert orchestrator.last_run is not None
    records = orchestrator.last_run.records
    assert records["fast"].ended_at is not None and records["slow"].ended_at is not None
    assert records["fast"].ended_at < records["slow"].ended_at
    assert list(result) == ["slow", "fast"]


async def test_parallel_failure_does_not_affect_the_others(demo: DemoServer) -> None:
    endpoints = [failing(demo, "bad", 502), delayed(demo, "a", 50), delayed(demo, "b", 50)]
    result, orchestrator, _ = await execute(endpoints, "parallel")
    assert result["bad"]["status"] == 502
    assert result["a"] == result["b"] == {"delayed_ms": 50}
    assert states(orchestrator)["bad"] is CallState.FAILED


# -- FANOUT ----------------------------------------------------------------------------------


async def test_fanout_sends_the_same_body_to_every_endpoint_at_once(demo: DemoServer) -> None:
    event = {"event": "signup", "user": {"id": 7, "tags": ["a", "b"]}, "amount": 12.5}
    endpoints = [
        delayed(demo, "notification", 150, method="POST"),
        delayed(demo, "analytics", 150, method="PUT"),
        delayed(demo, "audit", 150, method="PATCH"),
    ]
    result, _, elapsed = await execute(endpoints, OrchestrationMode.FANOUT, event)
    requests = seen(demo)
    assert set(requests) == {"notification", "analytics", "audit"}
    for name, method in (("notification", "POST"), ("analytics", "PUT"), ("audit", "PATCH")):
        assert requests[name].method == method
        assert requests[name].json == event
        assert requests[name].headers["Content-Type"].startswith("application/json")
    times = [r.t for r in requests.values()]
    assert max(times) - min(times) < SLACK
    assert elapsed < 2 * 0.15
    assert result == {name: {"delayed_ms": 150} for name in requests}


async def test_fanout_get_endpoints_get_no_body(demo: DemoServer) -> None:
    endpoints = [delayed(demo, "post", 0, method="POST"), delayed(demo, "get", 0)]
    await execute(endpoints, "fanout", {"k": 1})
    requests = seen(demo)
    assert requests["post"].json == {"k": 1}
    assert requests["get"].body == b""


# -- PIPELINE --------------------------------------------------------------------------------


def payment_steps(demo: DemoServer, **fraud: Any) -> list[APIEndpoint]:
    return [
        APIEndpoint(name="validate", url=demo.url + "/payment/validate", method="POST", **FAST),
        APIEndpoint(
            name="fraud",
            url=demo.url + "/fraud/check",
            method="POST",
            transform_input=lambda d: {"amount": d["amount"], "card_hash": d["card_token"]},
            **fraud,
            **FAST,
        ),
        APIEndpoint(name="charge", url=demo.url + "/processor/charge", method="POST", **FAST),
        APIEndpoint(name="notify", url=demo.url + "/notify/payment", method="POST", **FAST),
    ]


async def test_pipeline_feeds_each_output_into_the_next_body(demo: DemoServer) -> None:
    payment = {"amount": 250, "card_token": "tok_1"}
    result, _, _ = await execute(payment_steps(demo), OrchestrationMode.PIPELINE, payment)
    bodies = [r.json for r in demo.log]
    assert [r.path for r in demo.log] == [
        "/payment/validate",
        "/fraud/check",
        "/processor/charge",
        "/notify/payment",
    ]
    assert bodies[0] == payment
    assert bodies[1] == {"amount": 250, "card_hash": "tok_1"}  # shaped by transform_input
    assert (
        bodies[2]
        == result["fraud"]
        == {
            "approved": True,
            "risk_score": 0.1,
            "amount": 250,
            "card_hash": "tok_1",
        }
    )
    assert bodies[3] == result["charge"]
    assert result["charge"]["charged"] is True
    assert result["notify"] == {"notified": True, **result["charge"]}


async def test_pipeline_step_skipped_by_condition_passes_its_input_on(demo: DemoServer) -> None:
    steps = payment_steps(demo, condition=lambda d: d["amount"] > 100)
    payment = {"amount": 40, "card_token": "tok_2"}
    result, orchestrator, _ = await execute(steps, "pipeline", payment)
    assert [r.path for r in demo.log] == [
        "/payment/validate",
        "/processor/charge",
        "/notify/payment",
    ]
    assert demo.log[1].json == result["validate"] == {"valid": True, **payment}
    assert "fraud" not in result
    assert orchestrator.last_run is not None
    fraud = orchestrator.last_run.records["fraud"]
    assert fraud.state is CallState.SKIPPED
    assert fraud.reason == "condition is false"


async def test_pipeline_steps_never_overlap(demo: DemoServer) -> None:
    endpoints = [delayed(demo, n, 60, method="POST") for n in ("a", "b", "c")]
    await execute(endpoints, "pipeline", {"start": True})
    assert order(demo) == ["a", "b", "c"]
    times = [r.t for r in demo.log]
    assert max_overlap(times, 0.06) == 1
    assert demo.log[1].json == {"delayed_ms": 60}  # b received a's output


async def test_pipeline_failure_skips_the_rest_with_the_reason(demo: DemoServer) -> None:
    endpoints = [
        delayed(demo, "a", 0, method="POST"),
        failing(demo, "b", 500, method="POST"),
        delayed(demo, "c", 0, method="POST"),
    ]
    result, orchestrator, _ = await execute(endpoints, "pipeline", {"x": 1})
    assert order(demo) == ["a", "b"]
    assert list(result) == ["a", "b"]
    assert orchestrator.last_run is not None
    assert orchestrator.last_run.records["c"].reason == "dependency 'b' failed"


# -- CONDITIONAL -----------------------------------------------------------------------------


async def test_conditional_calls_only_endpoints_whose_condition_holds(demo: DemoServer) -> None:
    endpoints = [
        APIEndpoint(name="user", url=demo.url + "/users/{user_id}", **FAST),
        APIEndpoint(
            name="premium",
            url=demo.url + "/data/premium",
            condition=lambda ctx: ctx["user"]["user_type"] == "premium",
            **FAST,
        ),
        APIEndpoint(
            name="basic",
            url=demo.url + "/data/basic",
            condition=lambda ctx: ctx["user"]["user_type"] == "basic",
            **FAST,
        ),
        APIEndpoint(
            name="big",
            url=demo.url + "/data/big",
            condition=lambda ctx: ctx.get("amount", 0) > 100,
            **FAST,
        ),
        APIEndpoint(name="always", url=demo.url + "/data/always", **FAST),
    ]
    result, orchestrator, _ = await execute(endpoints, "conditional", {"user_id": 3, "amount": 5})
    assert [r.path for r in demo.log] == ["/users/3", "/data/premium", "/data/always"]
    assert demo.count("/data/basic") == 0
    assert demo.count("/data/big") == 0
    assert list(result) == ["user", "premium", "always"]
    assert states(orchestrator) == {
        "user": CallState.OK,
        "premium": CallState.OK,
        "basic": CallState.SKIPPED,
        "big": CallState.SKIPPED,
        "always": CallState.OK,
    }
    assert orchestrator.last_run is not None
    assert orchestrator.last_run.records["basic"].reason == "condition is false"
    assert orchestrator.last_run.records["basic"].attempts == []


async def test_conditional_runs_one_at_a_time_in_list_order(demo: DemoServer) -> None:
    endpoints = [delayed(demo, n, 60, condition=lambda ctx: True) for n in ("a", "b", "c")]
    await execute(endpoints, "conditional")
    assert order(demo) == ["a", "b", "c"]
    assert max_overlap([r.t for r in demo.log], 0.06) == 1


async def test_condition_receives_a_context_with_layers(demo: DemoServer) -> None:
    seen_ctx: list[Any] = []

    def condition(ctx: Any) -> bool:
        seen_ctx.append((ctx.input, dict(ctx.results), ctx.run_input, ctx["first"]))
        return True

    endpoints = [delayed(demo, "first", 0), delayed(demo, "second", 0, condition=condition)]
    await execute(endpoints, "conditional", {"k": 1})
    assert seen_ctx == [({"k": 1}, {"first": {"delayed_ms": 0}}, {"k": 1}, {"delayed_ms": 0})]


# -- HYBRID ----------------------------------------------------------------------------------


def diamond(demo: DemoServer, b: APIEndpoint | None = None) -> list[APIEndpoint]:
    return [
        delayed(demo, "a", 50),
        b or delayed(demo, "b", 200, depends_on=["a"]),
        delayed(demo, "c", 200, depends_on=["a"]),
        delayed(demo, "d", 10, depends_on=["b", "c"]),
    ]


async def test_hybrid_diamond_runs_branches_together_and_joins_after_both(
    demo: DemoServer,
) -> None:
    result, _, elapsed = await execute(diamond(demo), OrchestrationMode.HYBRID)
    assert list(result) == ["a", "b", "c", "d"]
    s = seen(demo)
    assert s["b"].t - s["a"].t >= 0.05 - 0.005  # after a answered
    assert s["c"].t - s["a"].t >= 0.05 - 0.005
    assert abs(s["b"].t - s["c"].t) < SLACK  # b and c overlap
    assert s["d"].t - max(s["b"].t, s["c"].t) >= 0.2 - 0.005  # d only after both answered
    assert elapsed < 0.05 + 0.2 + 0.01 + 0.2


async def test_hybrid_failed_branch_skips_the_join_but_not_the_other_branch(
    demo: DemoServer,
) -> None:
    b = failing(demo, "b", 500, depends_on=["a"])
    result, orchestrator, _ = await execute(diamond(demo, b), "hybrid")
    assert sorted(seen(demo)) == ["a", "b", "c"]
    assert result["b"]["status"] == 500
    assert result["c"] == {"delayed_ms": 200}
    assert "d" not in result
    assert orchestrator.last_run is not None
    d = orchestrator.last_run.records["d"]
    assert d.state is CallState.SKIPPED
    assert d.reason == "dependency 'b' failed"
    assert states(orchestrator)["c"] is CallState.OK


async def test_hybrid_skip_propagates_down_the_chain(demo: DemoServer) -> None:
    endpoints = [
        failing(demo, "root", 500),
        delayed(demo, "mid", 0, depends_on=["root"]),
        delayed(demo, "leaf", 0, depends_on=["mid"]),
    ]
    _, orchestrator, _ = await execute(endpoints, "hybrid")
    assert order(demo) == ["root"]
    assert orchestrator.last_run is not None
    records = orchestrator.last_run.records
    assert records["mid"].reason == "dependency 'root' failed"
    assert records["leaf"].reason == "dependency 'mid' failed"


async def test_hybrid_endpoint_starts_when_its_own_dependencies_are_done(
    demo: DemoServer,
) -> None:
    """Not when a whole "level" of the graph is done: `after_fast` does not wait for `slow`."""
    endpoints = [
        delayed(demo, "root", 20),
        delayed(demo, "slow", 400, depends_on=["root"]),
        delayed(demo, "fast", 20, depends_on=["root"]),
        delayed(demo, "after_fast", 20, depends_on=["fast"]),
        delayed(demo, "after_slow", 0, depends_on=["slow"]),
    ]
    await execute(endpoints, "hybrid")
    s = seen(demo)
    assert s["after_fast"].t - s["fast"].t >= 0.02 - 0.005
    assert s["after_fast"].t - s["fast"].t < 0.02 + SLACK
    assert s["after_fast"].t < s["slow"].t + 0.4 - 0.2  # well before slow has answered
    assert s["after_slow"].t - s["slow"].t >= 0.4 - 0.005


async def test_hybrid_max_concurrent_bounds_the_ready_endpoints(demo: DemoServer) -> None:
    endpoints = [delayed(demo, "root", 0)] + [
        delayed(demo, f"leaf{i}", 100, depends_on=["root"]) for i in range(4)
    ]
    await execute(endpoints, "hybrid", max_concurrent=2)
    leaves = [r.t for r in demo.log if r.query["who"].startswith("leaf")]
    assert max_overlap(leaves, 0.1) == 2
    assert max_in_window(leaves, 0.09) == 2


async def test_hybrid_dependency_skipped_by_its_condition_does_not_block(
    demo: DemoServer,
) -> None:
    b = delayed(demo, "b", 0, depends_on=["a"], condition=lambda ctx: False)
    result, orchestrator, _ = await execute(diamond(demo, b), "hybrid")
    assert sorted(seen(demo)) == ["a", "c", "d"]
    assert list(result) == ["a", "c", "d"]
    assert states(orchestrator)["b"] is CallState.SKIPPED


async def test_repeated_dependency_names_count_once(demo: DemoServer) -> None:
    endpoints = [delayed(demo, "a", 0), delayed(demo, "b", 0, depends_on=["a", "a"])]
    result, _, _ = await execute(endpoints, "hybrid")
    assert list(result) == ["a", "b"]
    assert order(demo) == ["a", "b"]


async def test_condition_that_raises_fails_that_endpoint_only(demo: DemoServer) -> None:
    endpoints = [
        delayed(demo, "broken", 0, condition=lambda ctx: ctx["no such key"]),
        delayed(demo, "next", 0),
    ]
    result, orchestrator, _ = await execute(endpoints, "conditional", {"k": 1})
    assert order(demo) == ["next"]
    assert states(orchestrator) == {"broken": CallState.FAILED, "next": CallState.OK}
    assert result["broken"]["error"] == (
        "endpoint 'broken': condition raised KeyError: 'no such key'"
    )


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
async def test_empty_endpoint_list_calls_result_merger_with_no_results(
    demo: DemoServer, mode: str
) -> None:
    merged, _, _ = await execute([], mode, result_merger=lambda results: {"n": len(results)})
    assert merged == {"n": 0}

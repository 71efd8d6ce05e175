"""What a run shows: its DataFrames, waterfall, latency chart, graph, display and script.

Every view is checked against real runs on the demo server and against the call records
they are drawn from; secrets must not reach any of them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    CallState,
    OrchestrationMode,
    OrchestrationTimeout,
    Run,
)
from apiorch_nb._call import CallRecord
from apiorch_nb._charts import (
    BACKOFF,
    FLIGHT_CANCELLED,
    FLIGHT_FAILED,
    FLIGHT_OK,
    FLIGHT_RETRIED,
    OUTCOME_COLOURS,
    QUEUED,
    RATE_WAIT,
)
from apiorch_nb._dag_chart import BOX_WIDTH, DATA_EDGES, ORDER_EDGES
from apiorch_nb.demo import DemoServer
from apiorch_nb.metrics import percentile

TOKEN = "tok-5e4d3c2b1a"  # passed by value as secrets={"TOKEN": ...}
LITERAL_KEY = "lit-9a8b7c6d"  # written straight into a credential-named header

CALL_DTYPES = {
    "endpoint": "string",
    "attempt": "Int64",
    "method": "string",
    "url": "string",
    "status": "Int64",
    "ok": "bool",
    "outcome": "category",
    "error": "string",
    "started_at": "float64",
    "queued_ms": "Float64",
    "wait_ms": "Float64",
    "latency_ms": "Float64",
    "backoff_ms": "Float64",
    "bytes": "Int64",
    "cache_hit": "bool",
    "breaker_state": "string",
    "rescued": "bool",
}


def never(context: Any) -> bool:
    """A named condition (exported by name); the same code is pasted into the script test."""
    return False


def hybrid_config(demo: DemoServer) -> APIOrchestrationConfig:
    u = demo.url
    return APIOrchestrationConfig(
        endpoints=[
            APIEndpoint("user", f"{u}/users/1", cache_ttl=60),
            APIEndpoint("flaky", f"{u}/flaky/views?fail=2", retry_delay=0.02, depends_on=["user"]),
            # one request per 0.2 s: the retry waits for the limiter
            APIEndpoint(
                "limited",
                f"{u}/flaky/rl?fail=1",
                retry_delay=0.01,
                rate_limit=1,
                rate_limit_window=0.2,
            ),
            APIEndpoint("broken", f"{u}/status/500", retry_count=1, retry_delay=0.01),
            APIEndpoint("after-broken", f"{u}/users/2", depends_on=["broken"]),
            APIEndpoint("gated", f"{u}/users/3", condition=never),
        ],
        mode=OrchestrationMode.HYBRID,
        circuit_breaker_threshold=1,  # `broken` is refused in the second run
    )


async def two_hybrid_runs(demo: DemoServer) -> tuple[Run, Run, APIOrchestrator]:
    """The first run retries, waits, fails and skips; the second hits the cache and breaker."""
    async with APIOrchestrator(hybrid_config(demo)) as orch:
        await orch.execute()
        first = orch.last_run
        await orch.execute()
        second = orch.last_run
    assert first is not None and second is not None
    return first, second, orch


def ends_ms(run: Run) -> list[float]:
    return [
        r["started_ms"] + r["queued_ms"] + r["wait_ms"] + (r["latency_ms"] or 0) + r["backoff_ms"]
        for r in run.attempt_rows()
    ]


# -- calls ----------------------------------------------------------------------------------


async def test_calls_has_typed_columns_one_row_per_attempt(demo: DemoServer) -> None:
    first, _, _ = await two_hybrid_runs(demo)
    calls = first.calls
    assert {c: str(t) for c, t in calls.dtypes.items()} == CALL_DTYPES
    assert list(calls.columns) == list(CALL_DTYPES)
    per_endpoint = calls.groupby("endpoint", sort=False).size().to_dict()
    assert per_endpoint == {
        "user": 1,
        "flaky": 3,
        "limited": 2,
        "broken": 2,
        "after-broken": 1,
        "gated": 1,
    }
    # rows that sent something are exactly what the server saw (the second run is later)
    assert calls["attempt"].gt(0).sum() == len(demo.requests()) - 2
    flaky = calls[calls.endpoint == "flaky"]
    assert flaky["attempt"].tolist() == [1, 2, 3]
    assert flaky["status"].tolist() == [503, 503, 200]
    assert flaky["ok"].tolist() == [False, False, True]
    assert set(flaky["outcome"]) == {"ok"}
    skipped = calls[calls.outcome == "skipped"].set_index("endpoint")
    assert skipped.loc["after-broken", "error"] == "dependency 'broken' failed"
    assert skipped.loc["gated", "error"] == "condition is false"
    assert skipped["attempt"].tolist() == [0, 0]
    assert skipped["latency_ms"].isna().all()
    assert list(calls["outcome"].cat.categories) == [s.value for s in CallState]
    assert first.calls is calls  # built once


async def test_calls_phase_numbers_agree_with_the_records(demo: DemoServer) -> None:
    first, _, _ = await two_hybrid_runs(demo)
    calls = first.calls
    for name, record in first.records.items():
        rows = calls[calls.endpoint == name]
        latency = sum(a.latency_s or 0.0 for a in record.attempts) * 1000
        assert rows["latency_ms"].fillna(0).sum() == pytest.approx(latency)
        wait = sum(a.rate_wait_s for a in record.attempts) * 1000
        assert rows["wait_ms"].sum() == pytest.approx(wait)
        backoff = sum(a.backoff_s for a in record.attempts) * 1000
        assert rows["backoff_ms"].sum() == pytest.approx(backoff)
    limited = calls[calls.endpoint == "limited"]
    assert limited["wait_ms"].iloc[1] > 100  # the retry waited for the 0.2 s window
    # an attempt's phases are back to back: its end is where the next attempt queues
    rows = first.attempt_rows()
    for (row, end), nxt in zip(zip(rows, ends_ms(first), strict=True), rows[1:], strict=False):
        if nxt["endpoint"] == row["endpoint"]:
            assert end == pytest.approx(nxt["started_ms"], abs=1e-6)
    assert min(calls["started_at"]) >= 0
    assert max(ends_ms(first)) <= first.duration_s * 1000


async def test_second_run_shows_cache_hit_and_open_circuit(demo: DemoServer) -> None:
    _, second, _ = await two_hybrid_runs(demo)
    calls = second.calls.set_index("endpoint")
    assert calls.loc["user", "outcome"] == "cached"
    assert calls.loc["user", "cache_hit"] and calls.loc["user", "ok"]
    assert calls.loc["user", "attempt"] == 0
    assert calls.loc["broken", "outcome"] == "circuit_open"
    assert calls.loc["broken", "attempt"] == 0
    assert "circuit" in calls.loc["broken", "error"]
    assert calls.loc["after-broken", "outcome"] == "skipped"


async def test_metrics_count_this_run_only(demo: DemoServer) -> None:
    first, second, orch = await two_hybrid_runs(demo)
    m1 = first.metrics
    assert m1.index.name == "endpoint"
    assert list(m1.index) == [*first.records, "ALL"]
    assert m1.loc["flaky", ["calls", "ok", "retries"]].tolist() == [1, 1, 2]
    assert m1.loc["broken", ["failed", "retries"]].tolist() == [1, 1]
    assert m1.loc["ALL", ["calls", "ok", "failed", "skipped", "retries"]].tolist() == [
        6,
        3,
        1,
        2,
        4,
    ]
    latencies = [a.latency_s * 1000 for a in first.records["flaky"].attempts if a.latency_s]
    assert m1.loc["flaky", "p50_ms"] == pytest.approx(percentile(latencies, 50))
    assert m1.loc["flaky", "p95_ms"] == pytest.approx(percentile(latencies, 95))
    assert m1.loc["flaky", "max_ms"] == pytest.approx(max(latencies))
    assert m1.loc["limited", "wait_ms"] > 100
    assert m1["p50_ms"].isna().tolist() == [False] * 4 + [True, True, False]

    m2 = second.metrics
    assert m2.loc["ALL", ["calls", "cached", "circuit_open", "skipped"]].tolist() == [6, 1, 1, 2]
    assert m2.loc["user", "cached"] == 1 and pd_isna(m2.loc["user", "p50_ms"])
    # the orchestrator's metrics are cumulative; the run's are not
    assert orch.get_metrics().endpoints["flaky"].successful_requests == 2
    assert m2.loc["flaky", "ok"] == 1


# -- timeline -------------------------------------------------------------------------------


def traces_by_name(fig: Any) -> dict[str, Any]:
    names = [t.name for t in fig.data]
    assert len(names) == len(set(names))
    return {t.name: t for t in fig.data}


async def test_timeline_draws_each_attempt_phase_as_a_segment(demo: DemoServer) -> None:
    first, _, _ = await two_hybrid_runs(demo)
    calls = first.calls
    fig = first.timeline()
    traces = traces_by_name(fig)
    bars = {n: t for n, t in traces.items() if t.type == "bar"}
    sent = calls[calls.attempt > 0]
    assert len(bars[QUEUED].x) == int((sent.queued_ms > 0).sum())
    assert len(bars[RATE_WAIT].x) == int((sent.wait_ms > 0).sum())
    assert len(bars[BACKOFF].x) == int((sent.backoff_ms > 0).sum()) == 4
    assert len(bars[FLIGHT_OK].x) == 3  # user, flaky, limited
    assert len(bars[FLIGHT_RETRIED].x) == 4  # flaky twice, limited, broken
    assert len(bars[FLIGHT_FAILED].x) == 1  # broken's last try
    # retries are more segments on the same row; the hover names the attempt
    flaky = [
        (y, h)
        for t in (bars[FLIGHT_RETRIED], bars[FLIGHT_OK])
        for y, h in zip(t.y, t.hovertext, strict=True)
        if y == "flaky"
    ]
    assert [h.split("<br>")[1] for _, h in flaky] == [
        "attempt 1 · status 503",
        "attempt 2 · status 503",
        "attempt 3 · status 200",
    ]
    # in-flight lengths are the calls' latencies; every segment lies inside the run
    in_flight = sorted(x for n in (FLIGHT_OK, FLIGHT_RETRIED, FLIGHT_FAILED) for x in bars[n].x)
    assert in_flight == pytest.approx(sorted(sent.latency_ms.tolist()))
    duration = first.duration_s * 1000
    for trace in bars.values():
        for base, length in zip(trace.base, trace.x, strict=True):
            assert base >= 0
            assert base + length <= duration + 1e-6
    wait = max(bars[RATE_WAIT].x)
    assert wait > 100
    assert bars[BACKOFF].marker.pattern.shape == "/"
    assert "rate-limit wait" in bars[RATE_WAIT].hovertext[0]
    # skipped calls are labelled at their decision time; rows are in endpoint order
    skipped = traces["skipped"]
    assert sorted(skipped.y) == ["after-broken", "gated"]
    assert set(skipped.text) == {"skipped"}
    assert all(0 <= x <= duration for x in skipped.x)
    assert list(fig.layout.yaxis.categoryarray) == list(first.records)
    assert fig.layout.yaxis.autorange == "reversed"
    assert first.summary() in fig.layout.title.text
    assert first.timeline().to_json() == fig.to_json()  # deterministic


async def test_timeline_marks_cache_hits_and_refused_calls(demo: DemoServer) -> None:
    _, second, _ = await two_hybrid_runs(demo)
    traces = traces_by_name(second.timeline())
    assert list(traces["cached"].y) == ["user"]
    assert traces["cached"].marker.color == "#1f77b4"
    assert list(traces["circuit open"].y) == ["broken"]
    assert list(traces["circuit open"].text) == ["circuit open"]
    assert "broken" in traces["circuit open"].hovertext[0]


async def test_timeline_of_an_interrupted_run_shows_queued_and_cancelled_calls(
    demo: DemoServer,
) -> None:
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint("slow", f"{demo.url}/delay/3000"),
            APIEndpoint("waiting", f"{demo.url}/delay/10"),
        ],
        mode=OrchestrationMode.PARALLEL,
        max_concurrent=1,
        total_timeout=0.3,
    )
    async with APIOrchestrator(config) as orch:
        with pytest.raises(OrchestrationTimeout):
            await orch.execute()
    run = orch.last_run
    assert run is not None
    calls = run.calls.set_index("endpoint")
    assert calls["outcome"].tolist() == ["cancelled", "cancelled"]
    # queued for its slot until the run stopped, never sent
    assert 250 <= calls.loc["waiting", "queued_ms"] <= 1000
    assert pd_isna(calls.loc["waiting", "latency_ms"])
    traces = traces_by_name(run.timeline())
    assert list(traces[FLIGHT_CANCELLED].y) == ["slow"]
    assert "waiting" in list(traces[QUEUED].y)
    assert sorted(traces["cancelled"].y) == ["slow", "waiting"]


def pd_isna(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


# -- latency chart --------------------------------------------------------------------------


async def test_latency_chart_has_a_box_per_endpoint_and_p50_p95(demo: DemoServer) -> None:
    first, _, _ = await two_hybrid_runs(demo)
    traces = traces_by_name(first.latency_chart())
    sending = ["user", "flaky", "limited", "broken"]
    assert [n for n, t in traces.items() if t.type == "box"] == sending
    assert len(traces["flaky"].y) == 3 and traces["flaky"].boxpoints == "all"
    for q in (50, 95):
        marks = traces[f"p{q}"]
        assert list(marks.x) == sending
        for name, value in zip(marks.x, marks.y, strict=True):
            latencies = [a.latency_s * 1000 for a in first.records[name].attempts if a.latency_s]
            assert value == pytest.approx(percentile(latencies, q))
        assert all(t.startswith(f"p{q} ") for t in marks.text)


# -- dependency graph -----------------------------------------------------------------------


async def test_dag_has_every_node_edge_kind_and_outcome_class(demo: DemoServer) -> None:
    odd = 'odd "name" <b>#1'
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint("get-user", f"{demo.url}/users/1"),
            APIEndpoint(odd, f"{demo.url}/status/404", retry_count=0),
            APIEndpoint("posts", f"{demo.url}/users/1/posts", depends_on=["get-user"]),
        ],
        mode=OrchestrationMode.SEQUENTIAL,
    )
    async with APIOrchestrator(config) as orch:
        await orch.execute()
    run = orch.last_run
    assert run is not None
    dag = run.dag()
    lines = dag.mermaid.splitlines()
    assert lines[0] == "flowchart LR"
    assert '    n0["get-user<br/>ok · 200 · ' in dag.mermaid
    assert '    n1["odd #34;name#34; #60;b#62;#35;1<br/>failed · 404 · ' in dag.mermaid
    assert "    n0 -.-> n1" in lines  # sequential order
    assert "    n0 --> n2" in lines  # depends_on: data
    assert "    n1 -.-> n2" in lines
    for outcome in ("ok", "failed", "skipped", "cached", "cancelled", "circuit_open"):
        assert re.search(rf"^    classDef {outcome} fill:#[0-9a-f]{{6}}", dag.mermaid, re.M)
    assert "    class n0,n2 ok" in lines and "    class n1 failed" in lines
    assert odd not in dag.mermaid  # only escaped: each node line has just its two quotes
    assert all(line.count('"') == 2 for line in lines[1:4])
    assert odd in dag.text and all(line == line.rstrip() for line in dag.text.splitlines())
    assert "needs get-user; after " + odd in dag.text
    assert dag._repr_mimebundle_() == {"text/vnd.mermaid": dag.mermaid, "text/plain": dag.text}
    assert dag._repr_mimebundle_(include={"text/plain"}) == {"text/plain": dag.text}


async def test_dag_of_the_hybrid_runs_classes_skipped_cached_and_circuit_open(
    demo: DemoServer,
) -> None:
    _, second, _ = await two_hybrid_runs(demo)
    mermaid = second.dag().mermaid
    assert "    class n0 cached" in mermaid
    assert "    class n3 circuit_open" in mermaid
    assert "    class n4,n5 skipped" in mermaid
    assert "    n3 --> n4" in mermaid and "    n0 --> n1" in mermaid
    assert "-.->" not in mermaid  # hybrid has data edges only


def chart_nodes(fig: Any) -> dict[str, tuple[float, float, str, str]]:
    """Endpoint -> (x, y, outcome trace, box fill) from a `dag_chart` figure."""
    fills = {shape.name: shape.fillcolor for shape in fig.layout.shapes}
    nodes = {}
    for trace in fig.data:
        if trace.name in (DATA_EDGES, ORDER_EDGES):
            continue
        for name, x, y in zip(trace.customdata, trace.x, trace.y, strict=True):
            assert name not in nodes
            nodes[name] = (x, y, trace.name, fills[name])
    return nodes


def chart_edges(fig: Any, kind: str) -> list[list[tuple[float, float]]]:
    """The polylines of one edge trace (split by ``None``), each ending in an arrowhead."""
    trace = traces_by_name(fig).get(kind)
    if trace is None:
        return []
    routes: list[list[tuple[float, float]]] = [[]]
    for x, y, size in zip(trace.x, trace.y, trace.marker.size, strict=True):
        if x is None:
            assert routes[-1][-1][2] > 0 and all(s == 0 for *_, s in routes[-1][:-1])
            routes.append([])
        else:
            routes[-1].append((x, y, size))
    assert routes.pop() == []
    return [[(x, y) for x, y, _ in route] for route in routes]


async def test_dag_chart_draws_a_box_per_call_and_an_arrow_per_edge(demo: DemoServer) -> None:
    first, second, _ = await two_hybrid_runs(demo)
    for run in (first, second):
        fig = run.dag_chart()
        nodes = chart_nodes(fig)
        assert list(nodes) != [] and sorted(nodes) == sorted(run.records)
        for name, (_, _, outcome, fill) in nodes.items():
            assert outcome == run.records[name].state.value
            assert fill == OUTCOME_COLOURS[outcome]
        # one arrow per edge of the plan, from the right of one box to the left of the next
        segments = chart_edges(fig, DATA_EDGES)
        assert len(segments) == len(run.edges) == 2 and chart_edges(fig, ORDER_EDGES) == []
        for (a, b, _), [tail, head] in zip(run.edges, segments, strict=True):
            assert tail == (nodes[a][0] + BOX_WIDTH / 2, nodes[a][1])
            assert head[0] == pytest.approx(nodes[b][0] - BOX_WIDTH / 2, abs=0.05)
            assert head[1] == nodes[b][1]
        assert run.dag_chart().to_json() == fig.to_json()  # deterministic
    # user -> flaky and broken -> after-broken: dependants one column right, the rest at 0
    nodes = chart_nodes(second.dag_chart())
    assert {name: x for name, (x, *_) in nodes.items()} == {
        "user": 0,
        "flaky": 1,
        "limited": 0,
        "broken": 0,
        "after-broken": 1,
        "gated": 0,
    }
    outcomes = {name: outcome for name, (_, _, outcome, _) in nodes.items()}
    assert outcomes == {
        "user": "cached",
        "flaky": "ok",
        "limited": "ok",
        "broken": "circuit_open",
        "after-broken": "skipped",
        "gated": "skipped",
    }
    # the boxes read name, outcome, status and latency; the hover adds the request
    traces = traces_by_name(first.dag_chart())
    ok = traces["ok"]
    label = dict(zip(ok.customdata, ok.text, strict=True))["flaky"]
    assert re.fullmatch(r"<b>flaky</b><br>ok<br>200 · \d+ ms · 3 tries", label)
    hover = dict(zip(ok.customdata, ok.hovertext, strict=True))["flaky"]
    assert f"GET {demo.url}/flaky/views?fail=2" in hover
    failed = traces["failed"]
    assert list(failed.customdata) == ["broken"] and "HTTP 500" in failed.hovertext[0]
    assert failed.textfont.color == "#ffffff"
    # every string passes the run's scrubber, names and URLs included
    hidden = dataclasses.replace(first, secret_values=("flaky",)).dag_chart().to_json()
    assert "flaky" not in hidden and "user \\u2192 [REDACTED]: needs" in hidden


def test_dag_chart_lays_out_longest_paths_left_to_right() -> None:
    names = ["a", "b", "c", "d", "e"]
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(n, f"http://127.0.0.1:9/{n}") for n in names],
        mode=OrchestrationMode.PARALLEL,
    )
    records = {ep.name: CallRecord(ep.name, ep.method, ep.url) for ep in config.endpoints}
    now = min(r.started_at for r in records.values())
    # a -> b -> c and a -> c (c stands past its latest dependency); d -> c; e alone
    edges = [("a", "b", "data"), ("b", "c", "order"), ("a", "c", "data"), ("d", "c", "data")]
    run = Run(config.mode, records, {}, now, now, config=config, edges=edges)
    fig = run.dag_chart()
    nodes = chart_nodes(fig)
    assert {name: x for name, (x, *_) in nodes.items()} == {"a": 0, "b": 1, "c": 2, "d": 0, "e": 0}
    for a, b, _ in edges:
        assert nodes[a][0] < nodes[b][0]
    # a column is centred and ordered top down in endpoint order
    assert [nodes[n][1] for n in ("a", "d", "e")] == [1.0, 0.0, -1.0]
    data, order = chart_edges(fig, DATA_EDGES), chart_edges(fig, ORDER_EDGES)
    assert len(data) == 3 and len(order) == 1
    # a -> c and d -> c cross column 1 through their own rows, beside b's box
    assert [len(route) for route in data] == [2, 3, 3]
    bends = [route[1] for route in data[1:]]
    assert bends == [(1.0, 0.0), (1.0, -1.0)] and nodes["b"][:2] == (1.0, 1.0)
    assert traces_by_name(fig)[ORDER_EDGES].line.dash == "dot"
    assert traces_by_name(fig)[DATA_EDGES].line.dash is None
    # a plan that has not run: white boxes with dark text
    assert {fill for *_, fill in nodes.values()} == {"#ffffff"}
    assert traces_by_name(fig)["pending"].textfont.color == "#333333"
    assert fig.layout.title.text == "dependency graph (parallel): 5 endpoints, 4 edges"


# -- display --------------------------------------------------------------------------------


async def test_repr_mimebundle_is_offline_html_and_a_text_table(demo: DemoServer) -> None:
    first, _, _ = await two_hybrid_runs(demo)
    bundle = first._repr_mimebundle_()
    text, page = bundle["text/plain"], bundle["text/html"]
    assert text.splitlines()[0].endswith(first.summary())
    assert re.search(r"^flaky +ok +200 +3 ", text, re.M)
    assert re.search(r"^broken +failed +500 +2 .*HTTP 500", text, re.M)
    assert "<script" not in page.lower() and "href" not in page and "src=" not in page
    own = {record.url for record in first.records.values()}
    for match in re.finditer(r"https?://[^\s<\"']+", page):
        assert match.group(0) in own
    for name in first.results:
        assert f"<summary><code>{name}</code></summary>" in page
    assert "&quot;user_type&quot;: &quot;premium&quot;" in page  # results as escaped JSON
    assert "background:#d62728" in page  # failed, coloured
    assert repr(first).startswith("<Run hybrid with failures: ")
    assert first._repr_mimebundle_(include={"text/html"}).keys() == {"text/html"}
    assert first._repr_mimebundle_(exclude={"text/html"}).keys() == {"text/plain"}


# -- secrets --------------------------------------------------------------------------------


def secret_config(demo: DemoServer) -> APIOrchestrationConfig:
    u = demo.url
    return APIOrchestrationConfig(
        endpoints=[
            APIEndpoint("me", f"{u}/echo", headers={"Authorization": "Bearer {$secrets.TOKEN}"}),
            APIEndpoint("keyed", f"{u}/users/1", headers={"X-API-Key": LITERAL_KEY}),
            APIEndpoint(
                "fails",
                f"{u}/status/401",
                params={"token": "{$secrets.TOKEN}", "q": "x"},
                retry_count=0,
                depends_on=["me"],
            ),
        ],
        mode=OrchestrationMode.HYBRID,
    )


async def test_secrets_never_appear_in_any_view(demo: DemoServer) -> None:
    async with APIOrchestrator(secret_config(demo), secrets={"TOKEN": TOKEN}) as orch:
        await orch.execute()
    run = orch.last_run
    assert run is not None
    assert demo.requests("/echo")[0].headers["Authorization"] == f"Bearer {TOKEN}"
    fig = run.timeline()
    shown = [
        run.calls.to_csv(),
        run.metrics.to_csv(),
        fig.to_json(),
        run.latency_chart().to_json(),
        run.dag().mermaid,
        run.dag().text,
        run.dag_chart().to_json(),
        *run._repr_mimebundle_().values(),
        run.to_python(),
        repr(run),
    ]
    for text in shown:
        assert TOKEN not in text and LITERAL_KEY not in text
    # the echoed Authorization header is a secret-named key in the result: redacted
    page = run._repr_mimebundle_()["text/html"]
    assert "&quot;Authorization&quot;: &quot;[REDACTED]&quot;" in page
    script = run.to_python()
    assert 'secrets={"TOKEN": os.environ["TOKEN"]}' in script
    assert '"X-API-Key": os.environ["X_API_KEY"]' in script
    assert '"Authorization": "Bearer {$secrets.TOKEN}"' in script


async def test_views_scrub_known_secret_values_anywhere(demo: DemoServer) -> None:
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint("echo", f"{demo.url}/echo", headers={"X-Plain": TOKEN})]
    )
    async with APIOrchestrator(config) as orch:
        await orch.execute()
    assert orch.last_run is not None
    assert TOKEN in orch.last_run._repr_mimebundle_()["text/html"]  # a plain header: user data
    run = dataclasses.replace(orch.last_run, secret_values=(TOKEN,))
    views = (run.to_python(), run.calls.to_csv(), run.dag_chart().to_json())
    for text in (*run._repr_mimebundle_().values(), *views):
        assert TOKEN not in text


# -- to_python ------------------------------------------------------------------------------


def round_trip_config(demo: DemoServer) -> APIOrchestrationConfig:
    u = demo.url
    return APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(
                "login",
                f"{u}/auth",
                method="POST",
                headers={"Authorization": f"Bearer {LITERAL_KEY}", "X-Token": "{$secrets.TOKEN}"},
            ),
            APIEndpoint(
                "me",
                f"{u}/echo",
                params={"q": "a b", "n": 2},
                headers={"X-Trace": "{login.token}"},
            ),
            APIEndpoint(
                "flaky",
                f"{u}/flaky/rt?fail=1",
                retry_delay=0.01,
                rate_limit=5,
                rate_limit_window=0.5,
                depends_on=["me"],
            ),
            APIEndpoint(
                "enrich", f"{u}/enrich", method="POST", body={"user": "{login.username}", "k": [1]}
            ),
            APIEndpoint("broken", f"{u}/status/503", retry_count=1, retry_delay=0.01),
            APIEndpoint("gated", f"{u}/users/9", condition=never),
        ],
        mode=OrchestrationMode.HYBRID,
        max_concurrent=3,
    )


def seen(demo: DemoServer) -> list[tuple[str, str, str, str]]:
    return sorted(
        (r.method, r.path, json.dumps(r.query, sort_keys=True), r.body.decode())
        for r in demo.requests()
    )


async def test_to_python_script_replays_the_same_requests(demo: DemoServer, tmp_path: Path) -> None:
    run_input = {"username": "ada", "amount": 12.5, "tags": ("a",), "password": "hunter2"}
    async with APIOrchestrator(round_trip_config(demo), secrets={"TOKEN": TOKEN}) as orch:
        await orch.execute(run_input)
    assert orch.last_run is not None
    original = seen(demo)
    headers = [(r.path, r.headers.get("Authorization"), r.headers.get("X-Token")) for r in demo.log]
    script = orch.last_run.to_python()
    assert TOKEN not in script and LITERAL_KEY not in script and "hunter2" not in script
    assert script.startswith('"""') and "# Define these before `config`" in script
    assert "condition=never," in script
    assert "# Define these before `config` below (import them or paste their code): never\n" in (
        script
    )
    assert '"password": os.environ["PASSWORD"]' in script
    assert "mode=OrchestrationMode.HYBRID," in script and "max_concurrent=3," in script
    assert "timeout=" not in script  # defaults are not written
    path = tmp_path / "replay.py"
    prelude = "def never(context):\n    return False\n\n\n"
    path.write_text(prelude + script)

    demo.reset()
    env = {
        **os.environ,
        "TOKEN": TOKEN,
        "AUTHORIZATION": LITERAL_KEY,
        "PASSWORD": "hunter2",
        "PYTHONWARNINGS": "error",
    }
    done = subprocess.run(
        [sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("<Run hybrid with failures: 6 calls")
    assert seen(demo) == original
    replayed = [
        (r.path, r.headers.get("Authorization"), r.headers.get("X-Token")) for r in demo.log
    ]
    assert sorted(replayed, key=str) == sorted(headers, key=str)
    assert ("/auth", f"Bearer {LITERAL_KEY}", TOKEN) in replayed


def test_to_python_writes_non_defaults_and_what_cannot_be_exported() -> None:
    base = "https://svc.example"
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(
                "a",
                "https://user:pw@svc.example/x?api_key=abc123&page=2",
                retry_on=[503, 500],
                transform_output=lambda v: v,
                headers={"Cookie": "sid=1", "Accept": "text/plain"},
                body=None,
            ),
            APIEndpoint(
                "b",
                f"{base}/y",
                method="post",
                body={"nested": [{"client_secret": 7, "ok": float("nan")}]},
                response_parser=json.loads,
            ),
        ],
        mode="parallel",
        fail_fast=True,
        result_merger=sorted,
    )
    run = Run(OrchestrationMode.PARALLEL, {}, {}, 0.0, 0.0, config=config, input=object())
    script = run.to_python()
    compile(script, "<export>", "exec")
    assert "abc123" not in script and "user:pw" not in script and "sid=1" not in script
    body = script.split("config = ")[1]
    assert (
        'url="https://" + os.environ["USERINFO"] + "@svc.example/x?api_key=" '
        '+ os.environ["API_KEY"] + "&page=2",'
    ) in body
    assert '"Cookie": os.environ["COOKIE"], "Accept": "text/plain"' in body
    assert "retry_on=[500, 503]," in body
    assert "transform_output=None,  # <lambda> in the original run: not exportable" in body
    assert 'method="POST",' in body and "method=" not in body.split("APIEndpoint(")[1]
    assert '{"client_secret": int(os.environ["CLIENT_SECRET"]), "ok": float("nan")}' in body
    assert "response_parser=loads," in body and "result_merger=sorted," in body
    assert "mode=OrchestrationMode.PARALLEL,\n    fail_fast=True," in body
    assert "run_input = None  # the original input (a object) is not a Python literal" in script
    assert "# Define these before `config` below (import them or paste their code): loads, " in (
        script
    )
    assert "body=" not in body.split("APIEndpoint(")[1]
    with pytest.raises(ValueError, match="no config"):
        Run(OrchestrationMode.PARALLEL, {}, {}, 0.0, 0.0).to_python()


def test_views_of_an_empty_run() -> None:
    run = Run(OrchestrationMode.PARALLEL, {}, {}, 0.0, 0.0, config=APIOrchestrationConfig())
    assert list(run.calls.columns) == list(CALL_DTYPES) and run.calls.empty
    assert list(run.metrics.index) == ["ALL"] and run.metrics.loc["ALL", "calls"] == 0
    assert run.timeline().data == () and run.latency_chart().data == ()
    assert run.dag_chart().data == () and run.dag_chart().layout.shapes == ()
    assert run.dag().mermaid.startswith("flowchart LR\n    classDef ok ")
    compile(run.to_python(), "<export>", "exec")
    assert run._repr_mimebundle_()["text/plain"].startswith("Run (parallel, ok): 0 calls")


def test_a_plan_that_has_not_run_shows_pending_calls() -> None:
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint("a", "http://127.0.0.1:9/a"),
            APIEndpoint("b", "http://127.0.0.1:9/b", depends_on=["a"]),
        ],
        mode=OrchestrationMode.HYBRID,
    )
    records = {ep.name: CallRecord(ep.name, ep.method, ep.url) for ep in config.endpoints}
    now = min(r.started_at for r in records.values())
    run = Run(config.mode, records, {}, now, now, config=config, edges=[("a", "b", "data")])
    assert run.calls["outcome"].tolist() == ["pending", "pending"]
    assert run.calls["attempt"].tolist() == [0, 0]
    dag = run.dag()
    assert "    class n0,n1 pending" in dag.mermaid and "    n0 --> n1" in dag.mermaid
    assert dag.text.splitlines()[2].split() == ["b", "pending", "needs", "a"]


# -- lazy imports ---------------------------------------------------------------------------


def test_plotly_loads_only_when_a_figure_is_drawn() -> None:
    code = textwrap.dedent(
        """
        import asyncio, json, sys
        import apiorch_nb
        from apiorch_nb.demo import DemoServer

        def loaded():
            return [m for m in ("pandas", "plotly", "IPython") if m in sys.modules]

        async def main():
            async with DemoServer() as demo:
                ep = apiorch_nb.APIEndpoint("u", demo.url + "/users/1")
                config = apiorch_nb.APIOrchestrationConfig(endpoints=[ep])
                async with apiorch_nb.APIOrchestrator(config) as orch:
                    await orch.execute()
            return orch.last_run

        run = asyncio.run(main())
        steps = {"run": loaded()}
        repr(run), run._repr_mimebundle_(), run.dag(), run.to_python()
        steps["display, dag, script"] = loaded()
        run.calls, run.metrics
        steps["frames"] = loaded()
        run.timeline()
        steps["timeline"] = loaded()
        print(json.dumps(steps))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    steps = json.loads(out.stdout)
    assert steps == {
        "run": [],
        "display, dag, script": [],
        "frames": ["pandas"],
        "timeline": ["pandas", "plotly"],
    }

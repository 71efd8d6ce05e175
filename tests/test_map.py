"""`APIOrchestrator.map`: the endpoint graph once per input row, judged at the server.

Each test counts what the demo server (or an inline server, where a test needs to see
requests in flight) received: one request per row and endpoint, each with its row's own
values, never more than ``max_concurrent`` at once, never more than a rate limit allows,
and nothing at all for rows an interrupt left pending. The frame is checked cell by cell
against the input's index.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _app_server import serving
from aiohttp import web

from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    ConfigError,
    MapRun,
    MapTimeout,
    OrchestrationMode,
)
from apiorch_nb.demo import DemoServer, max_in_window

STATUS_ERROR = ["status", "error"]


def endpoint(name: str, url: str, **kwargs: Any) -> APIEndpoint:
    kwargs.setdefault("retry_count", 0)
    kwargs.setdefault("timeout", 10.0)
    return APIEndpoint(name, url, **kwargs)


def orchestrator(
    *endpoints: APIEndpoint, cache: str | None = None, **config: Any
) -> APIOrchestrator:
    config.setdefault("mode", OrchestrationMode.PARALLEL)
    return APIOrchestrator(APIOrchestrationConfig(endpoints=list(endpoints), **config), cache=cache)


def user(demo: DemoServer, **kwargs: Any) -> APIEndpoint:
    return endpoint("user", demo.url + "/users/{id}", **kwargs)


def paths(demo: DemoServer, prefix: str = "/") -> Counter[str]:
    """How many times the server saw each path (query strings left out)."""
    return Counter(r.path for r in demo.requests(prefix=prefix))


def statuses(frame: pd.DataFrame) -> list[str]:
    return list(frame["status"])


def cells(column: pd.Series) -> list[Any]:
    """A column of scalars as a list, missing cells as None (an int column with a gap is
    Int64 with <NA>)."""
    return [None if pd.isna(v) else v for v in column]


class Canceller:
    """A map observer that cancels `task` once `after` rows have finished."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.task: asyncio.Future[Any] | None = None

    def map_started(self, run: MapRun) -> None:
        pass

    def row_finished(self, run: MapRun, position: int) -> None:
        if run.done == self.after and self.task is not None:
            self.task.cancel()

    def map_finished(self, run: MapRun) -> None:
        pass


async def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the server never got there"
        await asyncio.sleep(0.01)


class Gauge:
    """An inline server that knows how many requests it is serving at this moment.

    ``/slow/{key}`` holds each request for `hold_s` and counts it in flight meanwhile;
    ``/html-error`` answers 502 with a multi-line HTML page, as proxies do.
    """

    def __init__(self, hold_s: float = 0.1) -> None:
        self.hold_s = hold_s
        self.in_flight = 0
        self.peak = 0
        self.keys: list[str] = []
        self.url = ""

    async def slow(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        self.keys.append(key)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.hold_s)
        finally:
            self.in_flight -= 1
        return web.json_response({"key": key})

    async def html_error(self, request: web.Request) -> web.Response:
        page = "<html>\n<body>\n<h1>502 Bad Gateway</h1>\n</body>\n</html>\n"
        return web.Response(status=502, text=page, content_type="text/html")


@pytest.fixture
async def gauge() -> AsyncIterator[Gauge]:
    srv = Gauge()
    app = web.Application()
    app.router.add_get("/slow/{key}", srv.slow)
    app.router.add_get("/html-error", srv.html_error)
    async with serving(app, shutdown_timeout=0.1) as srv.url:
        yield srv


# -- one run per row --------------------------------------------------------------------------


async def test_each_row_calls_each_endpoint_once_with_its_own_values(demo: DemoServer) -> None:
    rows = pd.DataFrame({"id": [3, 5, 8]})
    analytics = endpoint("stats", demo.url + "/analytics/users/{id}")
    async with orchestrator(user(demo), analytics) as o:
        out = await o.map(rows, fields={"name": "user.name", "views": "stats.page_views"})
    assert paths(demo) == {
        **{f"/users/{i}": 1 for i in (3, 5, 8)},
        **{f"/analytics/users/{i}": 1 for i in (3, 5, 8)},
    }
    assert list(out.columns) == ["name", "views", *STATUS_ERROR]
    assert list(out["name"]) == ["User 3", "User 5", "User 8"]
    assert list(out["views"]) == [100 + i * 37 % 900 for i in (3, 5, 8)]
    assert statuses(out) == ["ok"] * 3
    assert list(out["error"]) == [None] * 3


async def test_a_list_of_dicts_gives_a_range_index(demo: DemoServer) -> None:
    async with orchestrator(user(demo)) as o:
        out = await o.map([{"id": 2}, {"id": 1}], fields="user.name")
    assert list(out.index) == [0, 1]
    assert list(out["user.name"]) == ["User 2", "User 1"]
    assert paths(demo) == {"/users/1": 1, "/users/2": 1}


@pytest.mark.parametrize(
    "index",
    [
        pd.Index(["carol", "ada", "bob", "dan"], name="who"),
        pd.MultiIndex.from_tuples([("b", 2), ("a", 1), ("b", 1), ("a", 2)], names=["team", "n"]),
        pd.RangeIndex(100, 108, 2),
        pd.DatetimeIndex(["2024-03-01", "2024-01-01", "2024-02-01", "2024-04-01"], name="day"),
    ],
    ids=["strings", "multiindex", "range-from-100-step-2", "dates"],
)
async def test_output_is_indexed_like_the_input(demo: DemoServer, index: pd.Index) -> None:
    rows = pd.DataFrame({"id": [7, 4, 9, 2]}, index=index)
    async with orchestrator(user(demo)) as o:
        out = await o.map(rows, fields="user.id")
    assert out.index.equals(rows.index)
    assert list(out.index.names) == list(rows.index.names)
    # each label's cell holds its own row's answer, not its neighbour's
    joined = rows.join(out)
    assert list(joined["user.id"]) == list(joined["id"]) == [7, 4, 9, 2]
    assert paths(demo) == {f"/users/{i}": 1 for i in (7, 4, 9, 2)}


# -- fields -----------------------------------------------------------------------------------


def user_and_posts(demo: DemoServer) -> list[APIEndpoint]:
    return [
        user(demo),
        endpoint(
            "posts",
            demo.url + "/users/{user.id}/posts",
            depends_on=["user"],
            response_parser=lambda r: r.json()["posts"],
        ),
    ]


async def test_no_fields_gives_each_endpoints_whole_result(demo: DemoServer) -> None:
    async with orchestrator(*user_and_posts(demo), mode="hybrid") as o:
        out = await o.map(pd.DataFrame({"id": [1, 2]}))
    assert list(out.columns) == ["user", "posts", *STATUS_ERROR]
    assert out.loc[1, "user"] == {
        "id": 2,
        "name": "User 2",
        "email": "user2@example.com",
        "user_type": "basic",
    }
    assert [p["title"] for p in out.loc[0, "posts"]] == [f"Post {k} by user 1" for k in (1, 2, 3)]


async def test_a_list_of_paths_gives_a_column_per_path(demo: DemoServer) -> None:
    async with orchestrator(*user_and_posts(demo), mode="hybrid") as o:
        out = await o.map(
            pd.DataFrame({"id": [1, 2]}),
            fields=["user.email", "posts.2.id", "user.no_such_field"],
        )
    assert list(out.columns) == ["user.email", "posts.2.id", "user.no_such_field", *STATUS_ERROR]
    assert list(out["user.email"]) == ["user1@example.com", "user2@example.com"]
    assert list(out["posts.2.id"]) == [13, 23]
    assert list(out["user.no_such_field"]) == [None, None]  # absent, not an error
    assert statuses(out) == ["ok", "ok"]


async def test_a_dict_of_fields_takes_paths_and_callables(demo: DemoServer) -> None:
    async with orchestrator(*user_and_posts(demo), mode="hybrid") as o:
        out = await o.map(
            pd.DataFrame({"id": [3, 4]}),
            fields={
                "name": "user.name",
                "n_posts": lambda results: len(results["posts"]),
                "premium": lambda results: results["user"]["user_type"] == "premium",
            },
        )
    assert list(out.columns) == ["name", "n_posts", "premium", *STATUS_ERROR]
    assert list(out["name"]) == ["User 3", "User 4"]
    assert list(out["n_posts"]) == [3, 3]
    assert list(out["premium"]) == [True, False]


async def test_each_row_runs_its_own_dependency_graph(demo: DemoServer) -> None:
    async with orchestrator(*user_and_posts(demo), mode="hybrid") as o:
        out = await o.map(
            pd.DataFrame({"id": [6, 2, 9]}, index=["x", "y", "z"]),
            fields={"name": "user.name", "first": "posts.0.title"},
        )
    assert out.to_dict("index") == {
        label: {"name": f"User {i}", "first": f"Post 1 by user {i}", "status": "ok", "error": None}
        for label, i in (("x", 6), ("y", 2), ("z", 9))
    }
    log = demo.log
    assert len(log) == 6
    for i in (6, 2, 9):
        (u,) = (r for r in log if r.path == f"/users/{i}")
        (p,) = (r for r in log if r.path == f"/users/{i}/posts")
        assert u.seq < p.seq  # posts waited for its own row's user


# -- values -----------------------------------------------------------------------------------


def awkward_rows() -> pd.DataFrame:
    """numpy ints and bools, NaN, pandas NA and NaT, timestamps: what real frames hold."""
    return pd.DataFrame(
        {
            "id": np.array([7, 8], dtype=np.int64),
            "score": [1.5, np.nan],
            "rank": pd.array([None, 3], dtype="Int64"),
            "seen": pd.to_datetime(["2024-05-01 12:30", None]),
            "vip": np.array([True, False]),
            "tag": ["a", None],
        }
    )


async def test_a_post_without_body_sends_the_row_as_plain_json(demo: DemoServer) -> None:
    echo = endpoint("echo", demo.url + "/echo?row={id}", method="POST")
    async with orchestrator(echo) as o:
        out = await o.map(awkward_rows(), fields="echo.json")
    bodies = {r.query["row"]: r.json for r in demo.requests("/echo", method="POST")}
    expected = {
        "7": {
            "id": 7,
            "score": 1.5,
            "rank": None,
            "seen": "2024-05-01T12:30:00",
            "vip": True,
            "tag": "a",
        },
        "8": {"id": 8, "score": None, "rank": 3, "seen": None, "vip": False, "tag": None},
    }
    assert bodies == expected
    assert list(out["echo.json"]) == [expected["7"], expected["8"]]
    assert statuses(out) == ["ok", "ok"]


async def test_numpy_values_fill_templates_as_plain_python(demo: DemoServer) -> None:
    echo = endpoint(
        "echo",
        demo.url + "/echo?id={id}&label=user-{id}-{vip}",
        method="POST",
        body={"id": "{id}", "score": "{score}", "rank": "{rank}", "vip": "{vip}"},
    )
    async with orchestrator(echo) as o:
        out = await o.map(awkward_rows(), fields="echo.json")
    seen = demo.requests("/echo", method="POST")
    assert [r.query for r in seen if r.query["id"] == "7"] == [{"id": "7", "label": "user-7-true"}]
    assert [r.query for r in seen if r.query["id"] == "8"] == [{"id": "8", "label": "user-8-false"}]
    # a whole-value placeholder keeps the (plain) type in a JSON body
    assert sorted((r.json for r in seen), key=lambda b: b["id"]) == [
        {"id": 7, "score": 1.5, "rank": None, "vip": True},
        {"id": 8, "score": None, "rank": 3, "vip": False},
    ]
    assert statuses(out) == ["ok", "ok"]


# -- concurrency and rate limits across rows --------------------------------------------------


async def test_max_concurrent_caps_calls_in_flight_across_all_rows(gauge: Gauge) -> None:
    slow = endpoint("slow", gauge.url + "/slow/{id}-a")
    other = endpoint("other", gauge.url + "/slow/{id}-b")
    rows = pd.DataFrame({"id": range(12)})
    async with orchestrator(slow, other, max_concurrent=50) as o:
        started = time.monotonic()
        out = await o.map(rows, max_concurrent=3, fields="slow.key")
        elapsed = time.monotonic() - started
    assert gauge.peak == 3  # never more, and the three slots were used
    assert sorted(gauge.keys) == sorted(f"{i}-{s}" for i in range(12) for s in "ab")
    assert list(out["slow.key"]) == [f"{i}-a" for i in range(12)]
    # 24 calls of 0.1 s, three at a time: at least eight rounds
    assert elapsed >= 0.8 - 0.02


async def test_max_concurrent_defaults_to_the_configs(gauge: Gauge) -> None:
    async with orchestrator(endpoint("slow", gauge.url + "/slow/{id}"), max_concurrent=4) as o:
        out = await o.map(pd.DataFrame({"id": range(10)}))
    assert gauge.peak == 4
    assert statuses(out) == ["ok"] * 10


async def test_a_short_map_still_fills_max_concurrent_with_a_rows_parallel_calls(
    gauge: Gauge,
) -> None:
    eps = [endpoint(f"e{k}", gauge.url + "/slow/{id}-" + str(k)) for k in range(3)]
    async with orchestrator(*eps, max_concurrent=6) as o:
        out = await o.map([{"id": 1}, {"id": 2}])
    assert statuses(out) == ["ok", "ok"]
    assert len(gauge.keys) == 6
    assert gauge.peak == 6


async def test_an_endpoint_rate_limit_holds_across_the_whole_map(demo: DemoServer) -> None:
    limited = endpoint(
        "limited",
        demo.url + "/limited/map",
        params={"limit": 4, "window": 0.5, "row": "{id}"},  # the server enforces it too
        rate_limit=4,
    )
    async with orchestrator(limited, rate_limit_window=0.5, max_concurrent=50) as o:
        started = time.monotonic()
        out = await o.map(pd.DataFrame({"id": range(12)}))
        elapsed = time.monotonic() - started
    seen = demo.requests("/limited/map")
    assert sorted(int(r.query["row"]) for r in seen) == list(range(12))
    assert demo.violations == []
    assert max_in_window([r.t for r in seen], 0.5) == 4
    assert statuses(out) == ["ok"] * 12
    # three windows' worth: the last four cannot start before two windows have passed
    assert 1.0 <= elapsed <= 3.0


# -- failures, retries, conditions, cache -----------------------------------------------------


async def test_failing_rows_are_failed_with_a_one_line_error_and_the_rest_ok(
    demo: DemoServer,
) -> None:
    check = endpoint("check", demo.url + "/status/{code}?row={id}")
    rows = pd.DataFrame({"id": [1, 2, 3, 4], "code": [200, 503, 204, 404]})
    async with orchestrator(user(demo), check) as o:
        out = await o.map(rows, fields="user.name")
    assert statuses(out) == ["ok", "failed", "ok", "failed"]
    assert list(out["error"]) == [
        None,
        'check: HTTP 503: {"status": 503}',
        None,
        'check: HTTP 404: {"status": 404}',
    ]
    # the failed rows' other endpoint still ran and kept its result
    assert list(out["user.name"]) == ["User 1", "User 2", "User 3", "User 4"]
    assert Counter(r.query["row"] for r in demo.requests(prefix="/status/")) == Counter("1234")
    # each row's outcome, read back: failed rows keep their call records, ok rows none
    run = o.last_map
    assert run is not None and len(run.outcomes) == 4
    first, failed = run.outcomes[0], run.outcomes[-1]
    assert first is not None and failed is not None
    assert (first.status, first.error, first.values, dict(first.records)) == (
        "ok",
        None,
        ["User 1"],
        {},
    )
    assert (failed.status, failed.values) == ("failed", ["User 4"])
    assert failed.records["check"].attempts[0].status == 404
    assert [o.status for o in run.outcomes[1:3] if o is not None] == ["failed", "ok"]


async def test_a_multi_line_error_body_becomes_one_line(gauge: Gauge) -> None:
    async with orchestrator(endpoint("proxy", gauge.url + "/html-error?row={id}")) as o:
        out = await o.map([{"id": 1}])
    (error,) = out["error"]
    assert statuses(out) == ["failed"]
    assert error.startswith("proxy: HTTP 502: <html> <body> <h1>502 Bad Gateway</h1>")
    assert "\n" not in error


async def test_a_row_missing_a_column_fails_alone_and_sends_nothing(demo: DemoServer) -> None:
    async with orchestrator(user(demo)) as o:
        out = await o.map([{"id": 1}, {"uid": 2}, {"id": 3}], fields="user.name")
    assert statuses(out) == ["ok", "failed", "ok"]
    assert "'user'" in out.loc[1, "error"] and "{id}" in out.loc[1, "error"]
    assert paths(demo) == {"/users/1": 1, "/users/3": 1}


async def test_retries_apply_to_each_row_on_its_own(demo: DemoServer) -> None:
    flaky = endpoint(
        "flaky",
        demo.url + "/flaky/{key}",
        params={"fail": "{fail}"},
        retry_count=2,
        retry_delay=0.01,
    )
    rows = pd.DataFrame({"key": ["a", "b", "c"], "fail": [0, 2, 3]})
    async with orchestrator(flaky) as o:
        out = await o.map(rows, fields="flaky.attempt")
        metrics = o.get_metrics()
    assert paths(demo) == {"/flaky/a": 1, "/flaky/b": 3, "/flaky/c": 3}
    assert statuses(out) == ["ok", "ok", "failed"]
    assert list(out["flaky.attempt"])[:2] == [1, 3]
    assert out.loc[2, "error"].startswith("flaky: HTTP 503")
    assert (metrics.successful_requests, metrics.failed_requests, metrics.retries) == (2, 1, 4)


async def test_a_false_condition_skips_the_call_and_the_row_stays_ok(demo: DemoServer) -> None:
    posts = endpoint(
        "posts",
        demo.url + "/users/{id}/posts",
        condition=lambda ctx: ctx["id"] % 2 == 0,
    )
    async with orchestrator(user(demo), posts) as o:
        out = await o.map(
            pd.DataFrame({"id": [1, 2, 3, 4]}), fields=["user.id", "posts.posts.0.id"]
        )
    assert statuses(out) == ["ok"] * 4
    assert cells(out["posts.posts.0.id"]) == [None, 21, None, 41]
    assert paths(demo, "/users/") == {
        **{f"/users/{i}": 1 for i in (1, 2, 3, 4)},
        "/users/2/posts": 1,
        "/users/4/posts": 1,
    }


async def test_cache_hits_read_cached_and_send_nothing(demo: DemoServer) -> None:
    rows = pd.DataFrame({"id": [1, 1, 2]})  # the repeated id is fetched once
    async with orchestrator(user(demo, cache_ttl=60)) as o:
        first = await o.map(rows, fields="user.name")
        second = await o.map(rows, fields="user.name")
        metrics = o.get_metrics()
    assert statuses(first) == ["ok", "cached", "ok"]
    assert statuses(second) == ["cached"] * 3
    assert list(second["user.name"]) == list(first["user.name"]) == ["User 1", "User 1", "User 2"]
    assert paths(demo) == {"/users/1": 1, "/users/2": 1}
    assert (metrics.successful_requests, metrics.cache_hits) == (2, 4)


async def test_a_row_with_one_uncached_call_is_ok_not_cached(demo: DemoServer) -> None:
    stats = endpoint("stats", demo.url + "/analytics/users/{id}")
    async with orchestrator(user(demo, cache_ttl=60), stats) as o:
        await o.map([{"id": 5}])
        out = await o.map([{"id": 5}])
    assert statuses(out) == ["ok"]
    assert paths(demo) == {"/users/5": 1, "/analytics/users/5": 2}


async def test_total_timeout_stops_one_row_not_the_map(demo: DemoServer) -> None:
    slow = endpoint("slow", demo.url + "{path}")
    rows = [{"id": 1, "path": "/data/a"}, {"id": 2, "path": "/hang"}, {"id": 3, "path": "/data/c"}]
    async with orchestrator(user(demo), slow, total_timeout=0.3) as o:
        started = time.monotonic()
        out = await o.map(rows, fields="slow.source")
        elapsed = time.monotonic() - started
    assert statuses(out) == ["ok", "failed", "ok"]
    assert "total_timeout" in out.loc[1, "error"] and "slow" in out.loc[1, "error"]
    assert list(out["slow.source"]) == ["a", None, "c"]
    assert 0.3 <= elapsed < 2.0
    assert paths(demo) == {
        **{f"/users/{i}": 1 for i in (1, 2, 3)},
        "/data/a": 1,
        "/hang": 1,
        "/data/c": 1,
    }


async def test_fail_fast_cancels_the_rest_of_its_row_only(demo: DemoServer) -> None:
    check = endpoint("check", demo.url + "/status/{code}?row={id}")
    slow = endpoint("slow", demo.url + "/delay/300?row={id}")
    rows = pd.DataFrame({"id": [1, 2, 3], "code": [200, 500, 200]})
    async with orchestrator(check, slow, fail_fast=True) as o:
        out = await o.map(rows, fields="slow.delayed_ms")
        run = o.last_map
    assert statuses(out) == ["ok", "failed", "ok"]
    assert out.loc[1, "error"] == 'check: HTTP 500: {"status": 500}'
    assert cells(out["slow.delayed_ms"]) == [300, None, 300]
    assert run is not None and run.outcomes[1] is not None
    assert run.outcomes[1].records["slow"].state.value == "cancelled"


# -- interrupts: nothing finished is lost ----------------------------------------------------


def three_waves(demo: DemoServer) -> tuple[APIEndpoint, pd.DataFrame]:
    """With max_concurrent=3: three quick rows, three that hang, three never reached."""
    call = endpoint("call", demo.url + "{path}", params={"row": "{row}"})
    kinds = ["/data/q"] * 3 + ["/hang"] * 3 + ["/data/q"] * 3
    rows = pd.DataFrame({"row": range(9), "path": kinds}, index=[f"r{i}" for i in range(9)])
    return call, rows


def check_interrupted(demo: DemoServer, run: MapRun) -> None:
    """Finished rows ok, hanging rows cancelled, the rest pending and never requested."""
    frame = run.frame()
    assert list(frame.index) == [f"r{i}" for i in range(9)]
    assert statuses(frame) == ["ok"] * 3 + ["cancelled"] * 3 + ["pending"] * 3
    assert cells(frame["call.source"]) == ["q"] * 3 + [None] * 6
    assert run.counts() == {"ok": 3, "cached": 0, "failed": 0, "cancelled": 3, "pending": 3}
    assert run.finished
    rows_seen = Counter(r.query["row"] for r in demo.log)
    assert rows_seen == Counter("012345")  # once each; rows 6-8 never sent


async def test_cancelling_the_map_keeps_every_finished_row(demo: DemoServer) -> None:
    call, rows = three_waves(demo)
    async with orchestrator(call, max_concurrent=3) as o:
        task = asyncio.ensure_future(o.map(rows, fields="call.source"))
        await wait_for(lambda: demo.count("/hang") == 3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        run = o.last_map
        metrics = o.get_metrics()
    assert run is not None
    check_interrupted(demo, run)
    assert isinstance(run.error, asyncio.CancelledError)
    assert (metrics.successful_requests, metrics.cancelled) == (3, 3)


async def test_a_cancelled_row_keeps_the_calls_that_finished(demo: DemoServer) -> None:
    stuck = endpoint("stuck", demo.url + "/hang?user={user.id}", depends_on=["user"])
    async with orchestrator(user(demo), stuck, mode="hybrid") as o:
        task = asyncio.ensure_future(o.map([{"id": 4}, {"id": 5}], fields="user.name"))
        await wait_for(lambda: demo.count("/hang") == 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        run = o.last_map
    assert run is not None
    frame = run.frame()
    assert statuses(frame) == ["cancelled", "cancelled"]
    assert list(frame["user.name"]) == ["User 4", "User 5"]
    for outcome in run.outcomes:
        assert outcome is not None
        states = {name: r.state.value for name, r in outcome.records.items()}
        assert states == {"user": "ok", "stuck": "cancelled"}
    assert sorted(r.query["user"] for r in demo.requests("/hang")) == ["4", "5"]


async def test_map_timeout_raises_with_every_row_recorded(demo: DemoServer) -> None:
    call, rows = three_waves(demo)
    async with orchestrator(call, max_concurrent=3) as o:
        started = time.monotonic()
        with pytest.raises(MapTimeout) as info:
            await o.map(rows, fields="call.source", timeout=0.8)
        elapsed = time.monotonic() - started
    err = info.value
    assert isinstance(err, TimeoutError)
    assert err.map_run is o.last_map
    assert err.map_run.error is err
    check_interrupted(demo, err.map_run)
    assert 0.8 <= elapsed < 3.0


async def test_an_observer_cancelling_after_k_rows_leaves_later_rows_unsent(
    demo: DemoServer,
) -> None:
    demo.latency_ms = 30
    rows = pd.DataFrame({"id": range(1, 21)})
    canceller = Canceller(after=5)
    async with orchestrator(user(demo), max_concurrent=2) as o:
        task = asyncio.ensure_future(o.map(rows, fields="user.id", observer=canceller))
        canceller.task = task
        with pytest.raises(asyncio.CancelledError):
            await task
        run = o.last_map
    assert run is not None and run.finished
    frame = run.frame()
    assert len(frame) == 20
    status = Counter(statuses(frame))
    assert status["ok"] >= 5 and status["pending"] >= 10
    assert status["ok"] + status["cancelled"] + status["pending"] == 20
    # rows run in input order: finished ones first, then the one(s) stopped, then pending
    order = {"ok": 0, "cancelled": 1, "pending": 2}
    assert statuses(frame) == sorted(statuses(frame), key=order.__getitem__)
    ok_ids = [i for i, s in zip(rows["id"], frame["status"], strict=True) if s == "ok"]
    assert cells(frame["user.id"])[: len(ok_ids)] == ok_ids
    seen = paths(demo)
    assert all(seen[f"/users/{i}"] == 1 for i in ok_ids)
    pending = [i for i, s in zip(rows["id"], frame["status"], strict=True) if s == "pending"]
    assert not any(f"/users/{i}" in seen for i in pending)
    assert sum(seen.values()) <= status["ok"] + status["cancelled"]


async def test_a_resumed_map_sends_only_the_rows_that_did_not_finish(
    demo: DemoServer, tmp_path: Path
) -> None:
    cache = f"sqlite:///{tmp_path}/c.db"
    rows = pd.DataFrame({"id": range(1, 13)}, index=[f"u{i}" for i in range(1, 13)])
    fields = {"name": "user.name", "email": "user.email"}
    demo.latency_ms = 30

    canceller = Canceller(after=5)
    async with orchestrator(user(demo, cache_ttl=300), max_concurrent=2, cache=cache) as o:
        task = asyncio.ensure_future(o.map(rows, fields=fields, observer=canceller))
        canceller.task = task
        with pytest.raises(asyncio.CancelledError):
            await task
        assert o.last_map is not None
        first = o.last_map.frame()
    finished = [i for i, s in zip(rows["id"], first["status"], strict=True) if s == "ok"]
    assert 5 <= len(finished) < 12

    # A request of the cancelled pass may still reach the server after this point, so
    # the resumed pass marks its own with a header (not part of the cache key).
    resume = user(demo, cache_ttl=300, headers={"X-Pass": "resume"})
    async with orchestrator(resume, max_concurrent=2, cache=cache) as o:
        resumed = await o.map(rows, fields=fields)
    sent = Counter(r.path for r in demo.requests() if r.headers.get("X-Pass") == "resume")
    assert sent == {f"/users/{i}": 1 for i in range(1, 13) if i not in finished}
    assert statuses(resumed) == ["cached" if i in finished else "ok" for i in range(1, 13)]

    demo.latency_ms = 0
    async with orchestrator(user(demo), max_concurrent=2) as o:
        uninterrupted = await o.map(rows, fields=fields)
    assert statuses(uninterrupted) == ["ok"] * 12
    pd.testing.assert_frame_equal(
        resumed.drop(columns="status"), uninterrupted.drop(columns="status")
    )


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        (
            [{"id": 1}],
            {"fields": "usr.name"},
            "field 'usr.name' reads 'usr.name', but no endpoint is named 'usr'; endpoints: user",
        ),
        ([{"id": 1}], {"fields": {"status": "user.name"}}, "'status' is reserved"),
        ([{"id": 1}], {"fields": ["user.name", "error"]}, "'error' is reserved"),
        ([{"id": 1}], {"fields": ["user.name", "user.name"]}, "'user.name' is listed twice"),
        ([{"id": 1}], {"fields": {"n": 3}}, "field 'n' must be a path like 'user.name', got 3"),
        ([{"id": 1}, 7], {}, "row 1 must be a mapping (a dict), got 7"),
        ({"id": [1, 2]}, {}, "rows must be a DataFrame or a list of dicts, got dict"),
        ("users.csv", {}, "rows must be a DataFrame or a list of dicts, got str"),
        (
            pd.DataFrame([[1, 2]], columns=["id", "id"]),
            {},
            "the DataFrame has duplicate column names",
        ),
        ([{"id": 1}], {"max_concurrent": 0}, "max_concurrent must be an int >= 1, got 0"),
        ([{"id": 1}], {"max_concurrent": 2.5}, "max_concurrent must be an int >= 1, got 2.5"),
    ],
    ids=[
        "unknown-endpoint",
        "status-column",
        "error-column",
        "field-twice",
        "not-a-path",
        "row-not-a-mapping",
        "a-dict",
        "a-string",
        "duplicate-columns",
        "max-concurrent-0",
        "max-concurrent-float",
    ],
)
async def test_bad_input_is_refused_before_anything_is_sent(
    demo: DemoServer, rows: Any, kwargs: dict[str, Any], message: str
) -> None:
    async with orchestrator(user(demo)) as o:
        with pytest.raises(ConfigError) as info:
            await o.map(rows, **kwargs)
    assert message in str(info.value)
    assert str(info.value).startswith("map: ")
    assert "\n" not in str(info.value)
    assert demo.log == []


# -- watching and counting --------------------------------------------------------------------


class Recorder:
    """A map observer that notes every event and what the run looked like at the time."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def map_started(self, run: MapRun) -> None:
        self.events.append(("started", (len(run), run.done, run.finished)))

    def row_finished(self, run: MapRun, position: int) -> None:
        outcome = run.outcomes[position]
        assert outcome is not None
        self.events.append(("row", (position, outcome.status)))

    def map_finished(self, run: MapRun) -> None:
        self.events.append(("finished", (run.done, run.finished)))


async def test_an_observer_sees_the_start_every_row_and_the_end(demo: DemoServer) -> None:
    recorder = Recorder()
    rows = pd.DataFrame({"id": [1, 2, 0, 4]})  # /users/0 is a 404
    async with orchestrator(user(demo), max_concurrent=2) as o:
        await o.map(rows, observer=recorder)
    events = recorder.events
    assert events[0] == ("started", (4, 0, False))
    assert events[-1] == ("finished", (4, True))
    assert sorted(detail for kind, detail in events[1:-1]) == [
        (0, "ok"),
        (1, "ok"),
        (2, "failed"),
        (3, "ok"),
    ]


async def test_an_observer_that_raises_is_detached_and_the_map_goes_on(
    demo: DemoServer, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Recorder):
        def row_finished(self, run: MapRun, position: int) -> None:
            super().row_finished(run, position)
            raise RuntimeError("display broke")

    broken = Broken()
    async with orchestrator(user(demo), max_concurrent=1) as o:
        out = await o.map([{"id": 1}, {"id": 2}, {"id": 3}], observer=broken)
    assert statuses(out) == ["ok"] * 3
    assert [kind for kind, _ in broken.events] == ["started", "row"]
    assert "display broke" in caplog.text
    assert paths(demo) == {"/users/1": 1, "/users/2": 1, "/users/3": 1}


async def test_metrics_count_every_call_of_the_map(demo: DemoServer) -> None:
    stats = endpoint("stats", demo.url + "/analytics/users/{id}")
    async with orchestrator(user(demo), stats) as o:
        await o.map(pd.DataFrame({"id": [1, 2, 0, 3]}))  # id 0: both calls 404
        metrics = o.get_metrics()
    assert (metrics.total_requests, metrics.successful_requests, metrics.failed_requests) == (
        8,
        6,
        2,
    )
    assert metrics.endpoints["user"].successful_requests == 3
    assert metrics.endpoints["stats"].error_types == {"http_404": 1}
    assert sum(paths(demo).values()) == 8


async def test_an_empty_frame_gives_an_empty_frame_with_the_columns(demo: DemoServer) -> None:
    recorder = Recorder()
    rows = pd.DataFrame({"id": pd.Series([], dtype="int64")}, index=pd.Index([], name="key"))
    async with orchestrator(user(demo)) as o:
        out = await o.map(rows, fields={"name": "user.name"}, observer=recorder)
        run = o.last_map
    assert list(out.columns) == ["name", *STATUS_ERROR]
    assert len(out) == 0
    assert out.index.name == "key"
    assert run is not None and run.finished and len(run) == 0
    assert [kind for kind, _ in recorder.events] == ["started", "finished"]
    assert demo.log == []


async def test_last_map_is_live_while_the_map_runs(demo: DemoServer) -> None:
    demo.latency_ms = 20
    seen: list[tuple[bool, dict[str, int]]] = []

    class Peek(Recorder):
        def row_finished(self, run: MapRun, position: int) -> None:
            seen.append((run.finished, run.counts()))

    async with orchestrator(user(demo), max_concurrent=1) as o:
        await o.map([{"id": 1}, {"id": 2}, {"id": 3}], observer=Peek())
        assert o.last_map is not None
        summary = o.last_map.summary()
    assert seen == [
        (False, {"ok": 1, "cached": 0, "failed": 0, "cancelled": 0, "pending": 2}),
        (False, {"ok": 2, "cached": 0, "failed": 0, "cancelled": 0, "pending": 1}),
        (False, {"ok": 3, "cached": 0, "failed": 0, "cancelled": 0, "pending": 0}),
    ]
    assert summary.startswith("3 rows (3 ok) in ")


async def test_an_id_column_with_a_failed_row_stays_whole_and_feeds_another_map(
    demo: DemoServer,
) -> None:
    async with orchestrator(user(demo)) as first:
        ids = await first.map(pd.DataFrame({"id": [21, 0, 7]}), fields={"id": "user.id"})
    assert str(ids["id"].dtype) == "Int64" and ids["id"][0] == 21 and ids["id"][1] is pd.NA
    assert statuses(ids) == ["ok", "failed", "ok"]
    demo.reset()
    async with orchestrator(user(demo)) as second:
        again = await second.map(ids[ids["status"] == "ok"][["id"]], fields={"name": "user.name"})
    assert sorted(paths(demo, "/users/")) == ["/users/21", "/users/7"]  # never /users/21.0
    assert list(again["name"]) == ["User 21", "User 7"]


async def test_a_missing_value_in_a_url_fails_its_row_and_sends_nothing_for_it(
    demo: DemoServer,
) -> None:
    rows = pd.DataFrame({"id": [1, None, 3]}, dtype="Int64")
    async with orchestrator(user(demo)) as o:
        frame = await o.map(rows, fields={"name": "user.name"})
    assert statuses(frame) == ["ok", "failed", "ok"]
    assert "placeholder {id} in url is None" in frame["error"][1]
    assert sorted(paths(demo, "/users/")) == ["/users/1", "/users/3"]  # never /users/null

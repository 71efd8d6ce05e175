"""The widget builder, headless: set widget values, click, await the run task, and assert on
the widgets' model state, on the run, and on what the demo server saw.

No kernel is needed: ipywidgets 8 without a frontend keeps its models in Python and its
comms are no-ops. ``button.click()`` calls the click handlers as a frontend click does.
"""

from __future__ import annotations

import asyncio
import html
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ipywidgets as w
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import start_new_kernel

import apiorch_nb
from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    ConfigError,
    OrchestrationMode,
    Run,
)
from apiorch_nb.demo import DemoServer
from apiorch_nb.notebook.builder import Builder

from .conftest import MERMAID, PLOTLY, Ran

PLAIN = "text/plain"


def add(b: Builder, name: str, url: str, method: str = "GET") -> Any:
    """Click "Add endpoint" and fill in the new form's first row."""
    b.add_button.click()
    form = b.endpoints[-1]
    form.name.value = name
    form.method.value = method
    form.url.value = url
    return form


def saw(demo: DemoServer) -> list[tuple[str, str, dict[str, str], Any]]:
    """What the server received: method, path, query and JSON body, in a stable order."""
    return sorted(
        ((r.method, r.path, dict(r.query), r.json) for r in demo.log),
        key=lambda t: json.dumps(t, sort_keys=True),
    )


def states(run: Run | None) -> dict[str, str]:
    assert run is not None
    return {name: record.state.value for name, record in run.records.items()}


def status(b: Builder) -> str:
    """The status line as the user reads it (HTML entities decoded)."""
    return html.unescape(b.status.value)


def invalid(widget: w.DOMWidget) -> bool:
    return "apiorch-invalid" in widget._dom_classes


async def until_value(widget: w.Widget, test: Callable[[Any], bool], timeout: float = 10) -> None:
    """Wait (no polling) until `widget.value` passes `test`."""
    if test(widget.value):
        return
    reached = asyncio.Event()

    def seen(change: Any) -> None:
        if test(change["new"]):
            reached.set()

    widget.observe(seen, names="value")
    try:
        await asyncio.wait_for(reached.wait(), timeout)
    finally:
        widget.unobserve(seen, names="value")


@pytest.fixture
def ns() -> dict[str, Any]:
    """A stand-in for the notebook's namespace."""
    return {}


# -- building and running -------------------------------------------------------------------


async def test_a_filled_form_runs_and_shows_progress_table_and_tabs(
    demo: DemoServer, ns: dict[str, Any]
) -> None:
    b = Builder(namespace=ns)
    assert b.run_button.disabled and "Add an endpoint" in status(b)
    user = add(b, "user", f"{demo.url}/users/3")
    user.params.add_button.click()
    user.params.rows[0][0].value = "verbose"
    user.params.rows[0][1].value = "yes"
    add(b, "slow", f"{demo.url}/delay/50")
    b.settings.mode.value = "parallel"
    assert b.problems == [] and not b.run_button.disabled
    b.run_button.click()
    assert b.task is not None
    assert b.run_button.disabled and not b.cancel_button.disabled
    await b.task
    assert not b.run_button.disabled and b.cancel_button.disabled
    assert (b.panel.progress.value, b.panel.progress.max) == (2, 2)
    assert b.panel.progress.bar_style == "success"
    assert states(b.run) == {"user": "ok", "slow": "ok"}
    assert b.run is not None and b.run.mode is OrchestrationMode.PARALLEL
    assert ns["builder_run"] is b.run
    assert b.run.results["user"]["name"] == "User 3"
    assert saw(demo) == [
        ("GET", "/delay/50", {}, None),
        ("GET", "/users/3", {"verbose": "yes"}, None),
    ]
    tabs = b.panel.results
    assert tabs is not None and tabs.titles == ("Table", "Timeline", "Latency", "Graph", "JSON")
    assert "apiorch-results" in tabs._dom_classes and tabs.selected_index == 0
    table, timeline, latency, graph, results = tabs.children
    assert '<div class="apiorch-run">' in table.value and "<code>user</code>" in table.value
    assert "run.calls" in table.value
    assert PLOTLY in timeline.outputs[0]["data"] and PLOTLY in latency.outputs[0]["data"]
    assert MERMAID in graph.outputs[0]["data"]
    assert results.outputs[0]["data"]["application/json"]["user"]["id"] == 3
    assert "Done: 2 calls" in status(b) and "builder_run" in status(b)


async def test_live_progress_table_and_waterfall_update_as_calls_finish(
    demo: DemoServer, ns: dict[str, Any]
) -> None:
    b = Builder(namespace=ns)
    for name, ms in (("fast", 0), ("middle", 400), ("slow", 800)):
        add(b, name, f"{demo.url}/delay/{ms}")
    b.settings.mode.value = "parallel"
    progress: list[int] = []
    b.panel.progress.observe(lambda c: progress.append(c["new"]), names="value")
    b.run_button.click()
    await until_value(b.panel.table, lambda v: "1/3 done" in v)
    live = b.panel.table.value
    assert "ok 1" in live and "in_flight 2" in live and "<code>slow</code>" in live
    assert PLOTLY in b.panel.waterfall.outputs[0]["data"]
    assert b.panel.results is None and "Running" in status(b)
    await b.task
    assert progress[-3:] == [1, 2, 3]
    assert b.panel.waterfall.outputs == () and b.panel.waterfall.layout.display == "none"
    assert b.panel.table.layout.display == "none" and b.panel.results is not None


async def test_the_live_waterfall_redraws_at_most_four_times_a_second(
    demo: DemoServer, ns: dict[str, Any]
) -> None:
    b = Builder(namespace=ns)
    for i in range(30):
        add(b, f"call_{i}", f"{demo.url}/delay/{20 * i}")  # one finishing every 20 ms
    b.settings.mode.value = "parallel"
    b.settings.max_concurrent.value = "30"
    b.run_button.click()
    await b.task
    assert b.run is not None
    # The first draw at the start, then at most one per 0.25 s, then the trailing one.
    assert 2 <= b.panel.waterfall_draws <= 2 + b.run.duration_s / 0.25 + 1
    assert b.panel.waterfall_draws < 30


async def test_run_is_ignored_while_a_run_is_going_on(demo: DemoServer, ns: dict[str, Any]) -> None:
    b = Builder(namespace=ns)
    add(b, "slow", f"{demo.url}/delay/300")
    b.run_button.click()
    first = b.task
    b.run_button.click()  # a click that reached the kernel before the button was disabled
    assert b.task is first
    await b.task
    assert demo.count("/delay/300") == 1


async def test_cancel_mid_run_records_the_cancelled_calls(
    demo: DemoServer, ns: dict[str, Any]
) -> None:
    b = Builder(namespace=ns)
    add(b, "fast", f"{demo.url}/delay/50")
    add(b, "stuck", f"{demo.url}/delay/5000")
    b.settings.mode.value = "parallel"
    b.run_button.click()
    task = b.task
    assert task is not None
    await until_value(b.panel.progress, lambda v: v >= 1)
    b.cancel_button.click()
    await asyncio.wait([task])
    assert task.cancelled()
    assert states(b.run) == {"fast": "ok", "stuck": "cancelled"}
    assert b.run is not None and b.run.duration_s < 4
    assert demo.count("/delay/5000") == 1  # it was sent, then cancelled
    assert "Cancelled (1 call(s) cancelled)" in status(b)
    assert b.panel.progress.bar_style == "warning" and b.panel.results is not None
    assert ns["builder_run"] is b.run
    assert not b.run_button.disabled and b.cancel_button.disabled


async def test_a_run_that_stops_early_is_shown_not_raised(
    demo: DemoServer, ns: dict[str, Any]
) -> None:
    b = Builder(namespace=ns)
    broken = add(b, "broken", f"{demo.url}/status/500")
    broken.retries.value = "0"
    add(b, "after", f"{demo.url}/users/1")
    b.settings.fail_fast.value = True
    b.run_button.click()
    assert b.task is not None
    await b.task
    assert states(b.run) == {"broken": "failed", "after": "cancelled"}
    assert "Stopped:" in status(b) and b.last_error is None
    assert b.panel.progress.bar_style == "danger"
    assert demo.count("/users/1") == 0


async def test_input_variable_fills_templates_and_the_run_is_stored_under_its_name(
    demo: DemoServer, ns: dict[str, Any]
) -> None:
    b = Builder(namespace=ns)
    add(b, "user", f"{demo.url}/users/{{user_id}}")
    b.settings.input_var.value = "order"
    b.settings.run_name.value = "mine"
    b.run_button.click()
    assert b.task is None and "input variable 'order' is not defined" in status(b)
    ns["order"] = {"user_id": 7}
    b.run_button.click()
    assert b.task is not None
    await b.task
    assert ns["mine"] is b.run and "builder_run" not in ns
    assert demo.count("/users/7") == 1
    b.settings.run_name.value = "not a name"
    assert invalid(b.settings.run_name) and b.run_button.disabled


async def test_secrets_come_from_the_builder_or_the_environment(
    demo: DemoServer, ns: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    b = Builder(namespace=ns)
    form = add(b, "echo", f"{demo.url}/echo")
    form.headers.add_button.click()
    form.headers.rows[0][0].value = "X-Token"
    form.headers.rows[0][1].value = "{$secrets.API_TOKEN}"
    monkeypatch.delenv("API_TOKEN", raising=False)
    b.run_button.click()
    assert b.task is None and "secret API_TOKEN" in status(b)
    monkeypatch.setenv("API_TOKEN", "from-env")
    b.run_button.click()
    assert b.task is not None
    await b.task
    b.secrets["API_TOKEN"] = "given"
    b.run_button.click()
    await b.task
    assert [r.headers["x-token"] for r in demo.requests("/echo")] == ["from-env", "given"]
    assert "given" not in b.cell_text() and "{{$secret API_TOKEN}}" in b.cell_text()


# -- validation -----------------------------------------------------------------------------


async def test_bad_url_duplicate_name_and_cycle_are_shown_and_disable_run(
    demo: DemoServer, ns: dict[str, Any]
) -> None:
    b = Builder(namespace=ns)
    a = add(b, "a", "ftp://example.com/x")
    assert invalid(a.url) and b.run_button.disabled
    message = "url must start with http:// or https://, got 'ftp://example.com/x'"
    assert message in html.unescape(a.errors.value)
    assert "1 problem(s)" in status(b)
    a.url.value = f"{demo.url}/users/1"
    assert not invalid(a.url) and a.errors.value == "" and not b.run_button.disabled

    c = add(b, "a", f"{demo.url}/users/2")
    message = "endpoint name 'a' is used twice; names must be unique"
    assert b.problems == [message]
    assert invalid(a.name) and invalid(c.name) and b.run_button.disabled
    c.name.value = "c"
    assert b.problems == [] and not invalid(a.name)

    a.set_dependencies([c.uid])
    c.set_dependencies([a.uid])
    assert b.problems == ["depends_on has a cycle: a -> c -> a"]
    assert invalid(a.depends_on) and invalid(c.depends_on)
    assert "depends_on has a cycle: a -> c -> a" in status(b)
    assert b.run_button.disabled
    b.run_button.click()  # a click that slipped through: nothing is sent
    assert b.task is None and "Not started" in status(b)
    c.depends_on.value = ()
    assert b.problems == [] and not b.run_button.disabled
    assert demo.log == []


def test_bad_numbers_get_the_engines_messages_next_to_their_fields(ns: dict[str, Any]) -> None:
    b = Builder(namespace=ns)
    form = add(b, "a", "http://127.0.0.1:9/x")
    form.timeout.value = "abc"
    form.retries.value = "-1"
    form.retry_on.value = "500, oops"
    form.burst.value = "1.5"
    b.settings.max_concurrent.value = "0"
    b.settings.rate_limit.value = "fast"
    assert b.problems == [
        "endpoint 'a': timeout must be a number, got 'abc'",
        "endpoint 'a': retry_count must be an integer >= 0, got -1",
        "endpoint 'a': retry_on must be a collection of HTTP status codes, got '500, oops'",
        "endpoint 'a': burst_limit must be an integer >= 1, got 1.5",
        "config: rate limit must look like 100/min, 10/s or 5/30s, got 'fast'",
        "config: max_concurrent must be an integer >= 1, got 0",
    ]
    for widget in (form.timeout, form.retries, form.retry_on, form.burst):
        assert invalid(widget)
    assert invalid(b.settings.max_concurrent) and invalid(b.settings.rate_limit)
    assert not invalid(form.url) and b.run_button.disabled
    with pytest.raises(ConfigError, match="timeout must be a number"):
        b.config  # noqa: B018
    form.timeout.value = "2.5"
    form.retries.value = "0"
    form.retry_on.value = "off"
    form.burst.value = "2"
    b.settings.max_concurrent.value = "4"
    b.settings.rate_limit.value = "100/min"
    endpoint = b.config.endpoints[0]
    assert (endpoint.timeout, endpoint.retry_count, endpoint.burst_limit) == (2.5, 0, 2)
    assert endpoint.retry_on == frozenset()
    assert (b.config.global_rate_limit, b.config.rate_limit_window) == (100, 60.0)


def test_header_and_param_rows_are_checked(ns: dict[str, Any]) -> None:
    b = Builder(namespace=ns)
    form = add(b, "a", "http://127.0.0.1:9/x")
    for key in ("Accept", "accept"):
        form.headers.add(key, "text/plain")
    form.params.add("", "orphan")
    assert b.problems == [
        "endpoint 'a': headers: 'accept' is given twice",
        "endpoint 'a': params: the value 'orphan' has no name",
    ]
    form.headers.remove(form.headers.rows[1])
    form.params.rows[0][0].value = "tag"
    form.params.add("tag", "two")
    assert b.config.endpoints[0].params == {"tag": ["orphan", "two"]}


def test_depends_on_offers_the_others_and_follows_renames_moves_and_removals(
    ns: dict[str, Any],
) -> None:
    b = Builder(namespace=ns)
    a, c, d = (add(b, n, f"http://127.0.0.1:9/{n}") for n in ("a", "c", "d"))
    assert [label for label, _ in a.depends_on.options] == ["c", "d"]
    d.depends_on.value = (c.uid, a.uid)
    assert b.config.endpoints[2].depends_on == ["c", "a"]  # the order they were chosen in
    a.name.value = "login"
    assert [label for label, _ in d.depends_on.options] == ["login", "c"]
    assert b.config.endpoints[2].depends_on == ["c", "login"]
    d.buttons["up"].click()
    d.buttons["up"].click()
    assert [f.name.value for f in b.endpoints] == ["d", "login", "c"]
    assert b.config.endpoints[0].depends_on == ["c", "login"]
    c.buttons["remove"].click()
    assert d.depends_on.value == (a.uid,)
    assert b.config.endpoints[0].depends_on == ["login"]


def test_duplicate_copies_everything_under_a_new_name(ns: dict[str, Any]) -> None:
    def parse(response: Any) -> Any:
        return response

    ns["parse"] = parse
    b = Builder(namespace=ns)
    a = add(b, "a", "http://127.0.0.1:9/a")
    src = add(b, "src", "http://127.0.0.1:9/src", method="POST")
    src.headers.add("X-Trace", "1")
    src.body.value = '{"k": [1, 2]}'
    src.timeout.value = "3"
    src.callables["response_parser"].value = "parse"
    src.set_dependencies([a.uid])
    src.buttons["duplicate"].click()
    assert [f.name.value for f in b.endpoints] == ["a", "src", "src_copy"]
    original, copy = b.config.endpoints[1:]
    assert copy.name == "src_copy"
    assert {**vars(copy), "name": "src"} == vars(original)
    assert copy.response_parser is parse and copy.depends_on == ["a"]


def test_callables_come_from_the_namespace_and_refresh(ns: dict[str, Any]) -> None:
    def keep(ctx: Any) -> bool:
        return True

    ns.update(keep=keep, json=json, Counter=Counter, _hidden=keep, number=3)
    b = Builder(namespace=ns)
    form = add(b, "a", "http://127.0.0.1:9/a")
    condition = form.callables["condition"]
    assert [v for _, v in condition.options] == ["", "keep"]
    condition.value = "keep"
    assert b.config.endpoints[0].condition is keep

    def later(value: Any) -> Any:
        return value

    ns["later"] = later
    assert "later" not in [v for _, v in condition.options]
    b.refresh_button.click()
    assert [v for _, v in condition.options] == ["", "keep", "later"]
    assert condition.value == "keep"
    del ns["keep"]
    b.refresh_button.click()
    assert condition.value == "keep" and invalid(condition)
    assert "condition: nothing callable named 'keep' in the notebook" in b.problems[0]


async def test_chosen_callables_shape_the_run(demo: DemoServer, ns: dict[str, Any]) -> None:
    def pick_name(result: Any) -> Any:
        return result["name"]

    ns["pick_name"] = pick_name
    b = Builder(namespace=ns)
    b.refresh_button.click()
    form = add(b, "user", f"{demo.url}/users/5")
    form.callables["transform_output"].value = "pick_name"
    b.run_button.click()
    assert b.task is not None
    await b.task
    assert b.run is not None and b.run.results == {"user": "User 5"}


# -- errors in callbacks surface ------------------------------------------------------------


async def test_a_raising_callback_surfaces_in_last_error_and_the_task(
    demo: DemoServer, ns: dict[str, Any]
) -> None:
    b = Builder(namespace=ns)
    add(b, "user", f"{demo.url}/users/1")

    @b.on_run_finished
    def broken(run: Run) -> None:
        raise RuntimeError("the callback broke")

    b.run_button.click()
    assert b.task is not None
    with pytest.raises(RuntimeError, match="the callback broke"):
        await b.task
    assert isinstance(b.last_error, RuntimeError)
    assert "Error in the builder: RuntimeError: the callback broke" in status(b)
    assert states(b.run) == {"user": "ok"}  # the run itself finished and is shown
    assert b.panel.results is not None and not b.run_button.disabled


async def test_a_failing_live_redraw_surfaces_and_the_run_goes_on(
    demo: DemoServer, ns: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    b = Builder(namespace=ns)
    add(b, "user", f"{demo.url}/users/1")
    add(b, "post", f"{demo.url}/users/1/posts")

    def broken(run: Run) -> str:
        raise ValueError("cannot draw")

    monkeypatch.setattr("apiorch_nb.notebook._builder_run.live_table", broken)
    b.run_button.click()
    assert b.task is not None
    with pytest.raises(ValueError, match="cannot draw"):
        await b.task
    assert states(b.run) == {"user": "ok", "post": "ok"}  # the engine never detached us
    assert b.panel.progress.value == 2
    assert "ValueError: cannot draw" in status(b)


def test_a_raising_widget_handler_surfaces_in_last_error() -> None:
    class Broken(dict[str, Any]):
        def items(self) -> Any:
            raise KeyError("namespace unavailable")

    b = Builder(namespace={})
    b.namespace = Broken()
    b.refresh_button.click()  # ipywidgets would log and forget this; the builder keeps it
    assert isinstance(b.last_error, KeyError)
    assert "KeyError" in status(b) and "namespace unavailable" in status(b)


def test_run_without_a_running_loop_says_so(ns: dict[str, Any]) -> None:
    b = Builder(namespace=ns)
    add(b, "a", "http://127.0.0.1:9/a")
    b.run_button.click()
    assert isinstance(b.last_error, RuntimeError)
    assert "running asyncio event loop" in str(b.last_error) and b.task is None


# -- round trips ----------------------------------------------------------------------------


def rich_builder(ns: dict[str, Any], base: str) -> Builder:
    """Every field of the form set to something other than its default."""

    def keep(ctx: Any) -> bool:
        return True

    def shape(value: Any) -> Any:
        return value

    ns.update(keep=keep, shape=shape)
    b = Builder(namespace=ns)
    login = add(b, "login", f"{base}/auth", method="POST")
    login.body.value = '{"username": "ada", "tags": ["x", "y"]}'
    login.retries.value = "1"
    login.retry_delay.value = "0.25"
    login.retry_on.value = "502, 503"
    login.timeout.value = "4.5"
    user = add(b, "user", f"{base}/users/{{login.user_id}}")
    user.headers.add("Accept", "application/json")
    user.params.add("verbose", "true")
    user.params.add("tag", "a b")
    user.params.add("tag", "c")
    user.rate_limit.value = "5"
    user.rate_window.value = "2"
    user.burst.value = "2"
    user.cache_ttl.value = "0"
    user.callables["condition"].value = "keep"
    user.callables["transform_output"].value = "shape"
    user.set_dependencies([login.uid])
    note = add(b, "note", f"{base}/echo", method="PUT")
    note.body.value = "plain text\nsecond line"
    note.cache_ttl.value = "30"
    b.settings.mode.value = "hybrid"
    b.settings.max_concurrent.value = "4"
    b.settings.total_timeout.value = "20"
    b.settings.fail_fast.value = True
    b.settings.rate_limit.value = "50/30s"
    b.settings.cache_ttl.value = "60"
    b.settings.breaker_threshold.value = "3"
    b.settings.breaker_timeout.value = "12.5"
    b.settings.run_name.value = "r"
    assert b.problems == []
    return b


def test_cell_text_round_trips_to_the_same_config(ns: dict[str, Any]) -> None:
    b = rich_builder(ns, "http://127.0.0.1:9")
    text = b.cell_text()
    assert text.startswith(
        "%%orchestrate --mode hybrid --max-concurrent 4 --total-timeout 20 --fail-fast "
        "--rate-limit 50/30s --cache-ttl 60 r <<\n"
        "# builder: circuit_breaker_threshold=3 circuit_breaker_timeout=12.5\n"
    )
    assert b.cell_textarea.value == text
    again = Builder.from_cell(text, namespace=ns)
    assert again.config == b.config
    assert again.settings.run_name.value == "r"
    assert again.cell_text() == text
    login = b.config.endpoints[0]
    assert login.body == {"username": "ada", "tags": ["x", "y"]}
    assert login.headers == {"Content-Type": "application/json"}  # as the cell language adds


def test_load_cell_text_from_the_textarea_replaces_the_form(ns: dict[str, Any]) -> None:
    b = Builder(namespace=ns)
    add(b, "old", "http://127.0.0.1:9/old")
    b.cell_textarea.value = (
        "%%orchestrate --mode parallel\n###\n# @name one\nGET http://127.0.0.1:9/one\n"
        "###\n# @name two\n# @depends_on one\nGET http://127.0.0.1:9/two\n"
    )
    b.load_button.click()
    assert [f.name.value for f in b.endpoints] == ["one", "two"]
    assert b.config.endpoints[1].depends_on == ["one"] and b.settings.mode.value == "parallel"
    assert "Loaded the cell text" in status(b)
    b.cell_textarea.value = "%%orchestrate\n###\nBOGUS LINE\n"
    b.load_button.click()
    assert "Cannot load the cell text" in status(b) and b.last_error is None
    assert [f.name.value for f in b.endpoints] == ["one", "two"]  # unchanged


def test_cell_text_runs_in_the_magic_exactly_as_the_builder_runs(
    demo: DemoServer, ip: InteractiveShell, run_cell: Callable[[str], Ran]
) -> None:
    b = rich_builder(ip.user_ns, demo.url)
    login, user, _ = b.endpoints
    login.url.value = f"{demo.url}/echo"
    login.body.value = '{"username": "ada", "user_id": 2}'
    user.url.value = f"{demo.url}/users/{{login.json.user_id}}"
    b.settings.run_name.value = "by_magic"
    ran = run_cell(b.cell_text())
    assert ran.error is None, ran.error
    by_magic = saw(demo)
    demo.reset()
    b.settings.run_name.value = "by_builder"

    async def click_and_wait() -> None:
        b.run_button.click()
        assert b.task is not None
        await b.task

    asyncio.run(click_and_wait())
    assert saw(demo) == by_magic
    assert sorted(path for _, path, _, _ in by_magic) == ["/echo", "/echo", "/users/2"]
    assert states(b.run) == states(ip.user_ns["by_magic"]) == dict.fromkeys(b.run.records, "ok")
    assert ip.user_ns["by_builder"] is b.run


def test_from_run_loads_what_the_run_ran(ns: dict[str, Any]) -> None:
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint("a", "http://127.0.0.1:9/a", params={"q": "1"}, timeout=5.0),
            APIEndpoint("b", "http://127.0.0.1:9/b/{id}", depends_on=["a"], retry_count=0),
        ],
        mode=OrchestrationMode.HYBRID,
        max_concurrent=3,
        circuit_breaker_threshold=2,
    )
    run = APIOrchestrator(config).plan()
    run.input = {"id": 9}
    b = Builder.from_run(run, namespace=ns)
    assert b.config == config
    assert b.data == {"id": 9}
    assert 'run_input = {"id": 9}' in b.python_code()
    assert apiorch_nb.builder(run, namespace=ns).config == config
    assert apiorch_nb.builder(config, namespace=ns).config == config


def test_from_file_reads_a_http_file_and_a_run_export(tmp_path: Path, ns: dict[str, Any]) -> None:
    path = tmp_path / "requests.http"
    path.write_text(
        "@base = http://127.0.0.1:9\n\n###\n# @name one\nGET {{base}}/one\n"
        '###\n# @name two\n# @retry 1 2s\nPOST {{base}}/two\n\n{"x": 1}\n',
        encoding="utf-8",
    )
    b = Builder.from_file(path, namespace=ns)
    one, two = b.config.endpoints
    assert (one.url, two.url, two.retry_count, two.retry_delay) == (
        "http://127.0.0.1:9/one",
        "http://127.0.0.1:9/two",
        1,
        2.0,
    )
    assert two.body == {"x": 1}
    exported = tmp_path / "run.http"
    config = APIOrchestrationConfig(endpoints=[one], mode="parallel", max_concurrent=7)
    exported.write_text(APIOrchestrator(config).plan().to_http(), encoding="utf-8")
    again = apiorch_nb.builder(str(exported), namespace=ns)
    assert again.config == config  # the commented magic line carries the settings
    with pytest.raises(FileNotFoundError):
        Builder.from_file(tmp_path / "missing.http", namespace=ns)


async def test_python_code_runs_in_a_subprocess_and_sends_the_same_requests(
    demo: DemoServer, ns: dict[str, Any], tmp_path: Path
) -> None:
    b = Builder(namespace=ns)
    add(b, "user", f"{demo.url}/users/{{user_id}}").params.add("verbose", "1")
    post = add(b, "echo", f"{demo.url}/echo", method="POST")
    post.body.value = '{"from": "builder", "n": [1, 2]}'
    post.set_dependencies([b.endpoints[0].uid])
    b.settings.mode.value = "hybrid"
    ns["order"] = {"user_id": 4}
    b.settings.input_var.value = "order"
    b.run_button.click()
    assert b.task is not None
    await b.task
    by_builder = saw(demo)
    demo.reset()
    script = tmp_path / "run.py"
    script.write_text(b.python_code(), encoding="utf-8")
    assert b.python_textarea.value == script.read_text(encoding="utf-8")
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert saw(demo) == by_builder
    assert ("GET", "/users/4", {"verbose": "1"}, None) in by_builder


# -- entry points and what the browser test selects on --------------------------------------


def test_builder_dispatches_on_its_source(ns: dict[str, Any], tmp_path: Path) -> None:
    assert isinstance(apiorch_nb.builder(namespace=ns), Builder)
    cell = "%%orchestrate\n###\n# @name a\nGET http://127.0.0.1:9/a\n"
    assert [f.name.value for f in apiorch_nb.builder(cell, namespace=ns).endpoints] == ["a"]
    (tmp_path / "a.http").write_text(cell.split("\n", 1)[1], encoding="utf-8")
    from_path = apiorch_nb.builder(tmp_path / "a.http", namespace=ns)
    assert from_path.config.endpoints[0].name == "a"
    with pytest.raises(TypeError):
        apiorch_nb.builder(42)


def test_orchestrate_builder_magic(
    ip: InteractiveShell, run_cell: Callable[[str], Ran], tmp_path: Path
) -> None:
    made = ip.run_line_magic("orchestrate_builder", "")
    assert isinstance(made, Builder) and made.namespace is ip.user_ns
    path = tmp_path / "r.http"
    path.write_text("###\n# @name a\nGET http://127.0.0.1:9/a\n", encoding="utf-8")
    from_file = ip.run_line_magic("orchestrate_builder", str(path))
    assert from_file.config.endpoints[0].name == "a"
    ip.user_ns["old"] = APIOrchestrator(from_file.config).plan()
    assert ip.run_line_magic("orchestrate_builder", "old").config == from_file.config
    with pytest.raises(UsageError, match=r"a \.http file or a variable holding a run"):
        ip.run_line_magic("orchestrate_builder", "nothing_here")
    ran = run_cell("%orchestrate_builder")
    assert ran.result.success and isinstance(ran.result.result, Builder)
    assert run_cell("%unload_ext apiorch_nb").result.success
    assert "orchestrate_builder" not in ip.magics_manager.magics["line"]


def test_stable_classes_and_descriptions_for_the_browser_test(ns: dict[str, Any]) -> None:
    b = Builder(namespace=ns)
    form = add(b, "a", "http://127.0.0.1:9/a")
    assert "apiorch-builder" in b.widget._dom_classes
    assert (b.run_button.description, b.add_button.description) == ("Run", "Add endpoint")
    assert b.cancel_button.description == "Cancel"
    assert "apiorch-endpoint-name" in form.name._dom_classes
    assert "apiorch-endpoint-url" in form.url._dom_classes
    bundle = b._repr_mimebundle_()
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == b.widget.model_id and PLAIN in bundle
    assert repr(b) == "<Builder: 1 endpoint(s), ready>"


def test_endpoint_forms_load_every_field_back(ns: dict[str, Any]) -> None:
    endpoint = APIEndpoint(
        "e",
        "http://127.0.0.1:9/e",
        method="PATCH",
        headers={"X-A": "1"},
        params={"many": ["1", "2"], "flag": True},
        body="raw",
        timeout=7.25,
        retry_count=5,
        retry_delay=0.5,
        retry_on=[429],
        rate_limit=3,
        rate_limit_window=10.0,
        burst_limit=1,
        cache_ttl=5.0,
        transform_input=lambda x: x,
    )
    b = Builder(namespace=ns)
    form = b.endpoints.add(endpoint)
    assert form.callables["transform_input"].value == "<lambda> (loaded)"
    loaded = b.config.endpoints[0]
    assert loaded.transform_input is endpoint.transform_input
    assert {**vars(loaded), "params": endpoint.params} == vars(endpoint)
    assert loaded.params == {"many": ["1", "2"], "flag": "true"}  # params are text, as in .http
    assert b.config.endpoints[0].body == "raw"


# -- in a real kernel, driven by the messages a frontend sends -------------------------------


class FrontendStandIn:
    """A kernel client that runs cells and sends widget messages as JupyterLab does."""

    def __init__(self, client: BlockingKernelClient) -> None:
        self.client = client

    def run(self, code: str, timeout: float = 60) -> str:
        """Run a cell; return its stdout (and fail on an error)."""
        msg_id = self.client.execute(code)
        text = []
        while True:
            msg = self.client.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            assert kind != "error", "\n".join(content["traceback"])
            if kind == "stream":
                text.append(content["text"])
            if kind == "status" and content["execution_state"] == "idle":
                return "".join(text)

    def widget_message(self, model_id: str, data: dict[str, Any]) -> None:
        """A ``comm_msg`` to a widget model: a value typed in, or a button clicked."""
        msg = self.client.session.msg("comm_msg", {"comm_id": model_id, "data": data})
        self.client.shell_channel.send(msg)

    def type_into(self, model_id: str, value: str) -> None:
        self.widget_message(
            model_id, {"method": "update", "state": {"value": value}, "buffer_paths": []}
        )

    def click(self, model_id: str) -> None:
        self.widget_message(model_id, {"method": "custom", "content": {"event": "click"}})


@pytest.fixture(scope="module")
def frontend() -> Iterator[FrontendStandIn]:
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        yield FrontendStandIn(client)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@pytest.mark.timeout(180)
def test_in_a_kernel_typing_and_clicking_run_and_cancel_on_the_kernels_loop(
    demo: DemoServer, frontend: FrontendStandIn
) -> None:
    ids = json.loads(
        frontend.run(
            "import asyncio, json, apiorch_nb\n"
            "b = apiorch_nb.builder()\n"
            "b.add_button.click()\n"
            "b.add_button.click()\n"
            "first, second = b.endpoints\n"
            "print(json.dumps({'url1': first.url.model_id, 'url2': second.url.model_id,\n"
            "    'mode': b.settings.mode.model_id, 'run': b.run_button.model_id,\n"
            "    'cancel': b.cancel_button.model_id}))\n"
        )
    )
    frontend.type_into(ids["url1"], f"{demo.url}/users/2")
    frontend.type_into(ids["url2"], f"{demo.url}/delay/50")
    frontend.click(ids["run"])  # handled between cells, on the kernel's running loop
    out = frontend.run(
        "await b.task\n"
        "print(b.last_error, {n: r.state.value for n, r in builder_run.records.items()})\n"
        "print(b.panel.results.titles)\n"
    )
    assert out.splitlines() == [
        "None {'request_1': 'ok', 'request_2': 'ok'}",
        "('Table', 'Timeline', 'Latency', 'Graph', 'JSON')",
    ]
    assert (demo.count("/users/2"), demo.count("/delay/50")) == (1, 1)

    frontend.type_into(ids["url2"], f"{demo.url}/delay/5000")
    frontend.type_into(ids["mode"], "parallel")
    frontend.click(ids["run"])
    frontend.run("await asyncio.sleep(0.3)")  # let the requests go out
    frontend.click(ids["cancel"])
    out = frontend.run(
        "await asyncio.wait([b.task])\n"
        "print(b.task.cancelled(), {n: r.state.value for n, r in b.run.records.items()})\n"
    )
    assert out.strip() == "True {'request_1': 'ok', 'request_2': 'cancelled'}"
    assert demo.count("/delay/5000") == 1

"""``%%orchestrate`` options, failing cells, display and secrets, through a real shell.

Cells run with ``InteractiveShell.run_cell`` against the demo server; each test asserts what
the server saw, what the stored run holds and what the cell showed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from apiorch_nb import OrchestrationMode, Run
from apiorch_nb.demo import DemoServer, max_in_window

from .conftest import MERMAID, PLOTLY, RunCell, assert_one_line_failure, states, stored


def arrivals(demo: DemoServer, prefix: str) -> list[float]:
    return sorted(r.t for r in demo.requests(prefix=prefix))


TWO_DELAYS = "###\n# @name a\nGET {{base}}/delay/300\n###\n# @name b\nGET {{base}}/delay/301\n"


# -- --mode ---------------------------------------------------------------------------------


def test_sequential_mode_sends_one_request_after_the_other(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    assert run_cell("%%orchestrate --mode sequential r <<\n" + TWO_DELAYS).result.success
    first, second = arrivals(demo, "/delay")
    assert second - first >= 0.28
    assert stored(ip).mode is OrchestrationMode.SEQUENTIAL


def test_parallel_mode_overlaps_at_the_server(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    assert run_cell("%%orchestrate --mode parallel r <<\n" + TWO_DELAYS).result.success
    first, second = arrivals(demo, "/delay")
    assert second - first < 0.15  # the second arrived while the first was still delayed
    assert stored(ip).duration_s < 0.55
    assert stored(ip).data == {"a": {"delayed_ms": 300}, "b": {"delayed_ms": 301}}


def test_fanout_mode_sends_the_one_input_to_every_endpoint_at_once(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ip.user_ns["order"] = {"order_id": 17}
    ran = run_cell(
        "%%orchestrate --mode fanout --input order r <<\n"
        "###\n# @name a\nPOST {{base}}/delay/300\n###\n# @name b\nPOST {{base}}/delay/301\n"
    )
    assert ran.result.success
    requests = demo.requests(prefix="/delay")
    assert [r.json for r in requests] == [{"order_id": 17}, {"order_id": 17}]
    assert abs(requests[0].t - requests[1].t) < 0.15


def test_pipeline_mode_feeds_each_output_to_the_next_request(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ip.user_ns["start"] = {"amount": 5}
    ran = run_cell(
        "%%orchestrate --mode pipeline --input start r <<\n"
        "###\n# @name enrich\nPOST {{base}}/enrich\n###\n# @name echo\nPOST {{base}}/echo\n"
    )
    assert ran.result.success
    assert [(r.path, r.json) for r in demo.log] == [
        ("/enrich", {"amount": 5}),
        ("/echo", {"amount": 5, "enriched": True}),
    ]


def test_conditional_mode_runs_in_order_and_only_what_its_condition_allows(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ip.user_ns["has_posts"] = lambda ctx: bool(ctx["posts"]["posts"])
    ip.user_ns["is_basic"] = lambda ctx: ctx["user"]["user_type"] == "basic"
    ran = run_cell(
        "%%orchestrate --mode conditional r <<\n"
        "###\n# @name user\nGET {{base}}/users/3\n"
        "###\n# @name posts\nGET {{base}}/users/3/posts\n"
        "###\n# @name downgrade\n# @condition is_basic\nGET {{base}}/data/downgrade\n"
        "###\n# @name first_post\n# @condition has_posts\nGET {{base}}/data/first\n"
    )
    assert ran.result.success
    assert [r.path for r in demo.log] == ["/users/3", "/users/3/posts", "/data/first"]
    assert states(stored(ip))["downgrade"] == "skipped"


def test_hybrid_mode_runs_independent_requests_together_and_dependants_after(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell(
        "%%orchestrate --mode hybrid r <<\n"
        + TWO_DELAYS
        + "###\n# @name c\n# @depends_on a, b\nGET {{base}}/users/1\n"
    )
    assert ran.result.success
    a, b = arrivals(demo, "/delay")
    (c,) = demo.requests("/users/1")
    assert b - a < 0.15
    assert c.t - b >= 0.28


# -- the other options ---------------------------------------------------------------------


def test_max_concurrent_caps_how_many_requests_are_in_flight(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    cell = "%%orchestrate --mode parallel --max-concurrent 2\n" + "".join(
        f"###\n# @name d{i}\nGET {{{{base}}}}/delay/{300 + i}\n" for i in range(4)
    )
    assert run_cell(cell).result.success
    times = arrivals(demo, "/delay")
    assert len(times) == 4
    assert times[1] - times[0] < 0.15
    assert times[2] - times[0] >= 0.28  # the third waited for a free slot


def test_total_timeout_fails_the_cell_with_one_line_and_cancels_the_rest(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell(
        "%%orchestrate --total-timeout 0.3 r <<\n###\n# @name slow\nGET {{base}}/delay/5000\n"
    )
    assert stored(ip).duration_s < 2
    message = assert_one_line_failure(ran)
    assert message.startswith("total_timeout of 0.3s ran out; cancelled: slow.")
    assert "the run is stored in `r`" in message
    assert states(stored(ip)) == {"slow": "cancelled"}
    assert demo.count("/delay/5000") == 1


def test_fail_fast_stops_the_run_at_the_first_failure(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    cell = (
        "###\n# @name bad\n# @retry 0\nGET {{base}}/status/500\n"
        "###\n# @name next\nGET {{base}}/users/1\n"
    )
    message = assert_one_line_failure(run_cell("%%orchestrate --fail-fast r <<\n" + cell))
    assert message.startswith("1 of 2 endpoint(s) failed (FailFastError): bad: HTTP 500")
    assert demo.count("/users/1") == 0
    assert states(stored(ip)) == {"bad": "failed", "next": "cancelled"}
    demo.reset()
    assert_one_line_failure(run_cell("%%orchestrate r <<\n" + cell))
    assert demo.count("/users/1") == 1  # without --fail-fast the next request still runs


def test_global_rate_limit_spreads_every_request_over_windows(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    cell = "%%orchestrate --mode parallel --rate-limit 2/1s\n" + "".join(
        f"###\n# @name g{i}\n# @retry 0\nGET {{{{base}}}}/limited/g?limit=2&window=0.9&i={i}\n"
        for i in range(4)
    )
    assert run_cell(cell).result.success
    times = arrivals(demo, "/limited/g")
    assert len(times) == 4
    assert demo.violations == []
    assert max_in_window(times, 1.0) <= 2
    assert times[-1] - times[0] >= 0.9


def test_cache_ttl_caches_get_responses_across_cells(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    cell = "%%orchestrate --cache-ttl 60 r <<\n###\n# @name user\nGET {{base}}/users/4\n"
    assert run_cell(cell).result.success
    assert run_cell(cell).result.success
    assert demo.count("/users/4") == 1
    assert states(stored(ip)) == {"user": "cached"}
    assert run_cell(cell.replace(" --cache-ttl 60", "")).result.success
    assert demo.count("/users/4") == 2  # no TTL: sent again


def test_input_fills_templates_and_is_the_body_of_a_post(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ip.user_ns["payload"] = {"user_id": 6, "note": "hi"}
    ran = run_cell(
        "%%orchestrate --input payload r <<\n"
        "###\n# @name user\nGET {{base}}/users/{{user_id}}\n"
        "###\n# @name echo\nPOST {{base}}/echo\n"
    )
    assert ran.result.success
    assert demo.count("/users/6") == 1
    assert demo.requests("/echo")[0].json == {"user_id": 6, "note": "hi"}
    assert stored(ip).input == {"user_id": 6, "note": "hi"}


def test_allow_failures_keeps_the_cell_green_and_shows_the_run(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell(
        "%%orchestrate --allow-failures r <<\n###\n# @name bad\n# @retry 0\n"
        "GET {{base}}/status/502\n###\n# @name good\nGET {{base}}/users/1\n"
    )
    assert ran.result.success and ran.stderr == ""
    assert ran.result.result is stored(ip)
    assert states(stored(ip)) == {"bad": "failed", "good": "ok"}
    assert {"text/html", "text/plain"} in ran.mimetypes
    assert demo.count("/status/502") == 1


def test_dry_run_sends_nothing_and_shows_the_plan_and_graph(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell(
        "%%orchestrate --dry-run --mode hybrid\n"
        "###\n# @name login\nPOST {{base}}/auth\n"
        "###\n# @name me\nGET {{base}}/user\nAuthorization: Bearer {{login.token}}\n"
        "###\n# @name key\nGET {{base}}/users/1\nX-Key: {{$secret APIORCH_NB_UNSET_SECRET}}\n"
    )
    assert ran.result.success
    assert ran.result.result is None
    assert demo.log == []
    html = next(b["text/html"] for b in ran.bundles if "text/html" in b)
    assert all(name in html for name in ("login", "me", "key"))
    graph = next(b[MERMAID] for b in ran.bundles if MERMAID in b)
    assert graph.startswith("flowchart") and "login" in graph and "-->" in graph
    assert {"text/plain": "secrets it would read: APIORCH_NB_UNSET_SECRET"} in ran.bundles


def test_quiet_shows_nothing_but_stores_the_run(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell("%%orchestrate --quiet r <<\n###\n# @name user\nGET {{base}}/users/2\n")
    assert ran.result.success
    assert ran.result.result is None
    assert (ran.outputs, ran.stdout, ran.stderr) == ([], "", "")
    assert stored(ip).data == {"user": {**stored(ip).data["user"], "id": 2}}
    assert demo.count("/users/2") == 1


def test_quiet_failure_still_fails_the_cell_without_display(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell("%%orchestrate -q r <<\n###\n# @name bad\n# @retry 0\nGET {{base}}/status/500\n")
    assert assert_one_line_failure(ran).startswith("1 of 1 endpoint(s) failed: bad: HTTP 500")
    assert ran.outputs == []


HTTP_FILE = (
    "@who = 9\n"
    "### Login\n# @name login\nPOST {{base}}/auth\n\n"
    '{"username": "grace"}\n'
    "###\n# @name me\nGET {{base}}/user\nAuthorization: Bearer {{login.token}}\n"
    "###\n# @name user\nGET {{base}}/users/{{who}}\n"
)


def test_line_magic_runs_a_http_file_amid_python_code(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, tmp_path: Path
) -> None:
    path = tmp_path / "requests.http"
    path.write_text(HTTP_FILE, encoding="utf-8")
    ran = run_cell(
        f"before = 1\n%orchestrate -f {path} --mode hybrid r <<\nafter = r.data['me']['username']\n"
    )
    assert ran.result.success, ran.stderr
    assert ip.user_ns["after"] == "grace"
    assert sorted(r.path for r in demo.log) == ["/auth", "/user", "/users/9"]
    assert demo.requests("/user")[0].t > demo.requests("/auth")[0].t
    assert stored(ip).mode is OrchestrationMode.HYBRID


def test_cell_magic_runs_a_http_file(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, tmp_path: Path
) -> None:
    path = tmp_path / "requests.http"
    path.write_text(HTTP_FILE, encoding="utf-8")
    assert run_cell(f"%%orchestrate -f {path} r <<\n").result.success
    assert stored(ip).data["user"]["id"] == 9
    assert demo.count() == 3


def test_errors_in_a_http_file_name_the_file_line(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, tmp_path: Path
) -> None:
    path = tmp_path / "broken.http"
    path.write_text("###\n# @name user\n# @retry lots\nGET {{base}}/users/1\n", encoding="utf-8")
    ran = run_cell(f"%orchestrate -f {path}")
    assert isinstance(ran.error, UsageError)
    assert str(ran.error).startswith("line 3: @retry expects `@retry COUNT [DELAY]`")
    assert "    # @retry lots" in str(ran.error)
    assert demo.log == []


@pytest.mark.parametrize("line", ["r << --mode parallel", "--mode parallel r <<"])
def test_store_target_may_stand_anywhere_on_the_line(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, line: str
) -> None:
    assert run_cell(f"%%orchestrate {line}\n" + TWO_DELAYS).result.success
    assert stored(ip).mode is OrchestrationMode.PARALLEL
    assert len(demo.log) == 2


def test_config_changes_the_defaults_and_the_line_still_wins(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    assert run_cell('%config OrchestrateMagics.mode = "parallel"').result.success
    assert run_cell("%config OrchestrateMagics.allow_failures = True").result.success
    assert run_cell("%%orchestrate r <<\n" + TWO_DELAYS).result.success
    assert stored(ip).mode is OrchestrationMode.PARALLEL
    first, second = arrivals(demo, "/delay")
    assert second - first < 0.15
    assert run_cell("%%orchestrate --mode sequential s <<\n" + TWO_DELAYS).result.success
    assert stored(ip, "s").mode is OrchestrationMode.SEQUENTIAL
    failing = run_cell("%%orchestrate\n###\n# @name bad\n# @retry 0\nGET {{base}}/status/500\n")
    assert failing.result.success  # allow_failures from %config


def test_config_keeps_the_default_when_given_an_unknown_mode(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    # %config logs the refused value (traitlets) and leaves the trait as it was
    assert run_cell('%config OrchestrateMagics.mode = "sideways"').result.success
    assert run_cell("%%orchestrate r <<\n" + TWO_DELAYS).result.success
    assert stored(ip).mode is OrchestrationMode.SEQUENTIAL


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--mode sideways", "argument -m/--mode: invalid choice: 'sideways'"),
        ("--nope", "unrecognized arguments: --nope"),
        ("--max-concurrent many", "argument -c/--max-concurrent: invalid int value: 'many'"),
        ("--max-concurrent 0", "config: max_concurrent must be an integer >= 1, got 0"),
        ("--rate-limit 5/fortnight", "rate limit must look like 100/min, 10/s or 5/30s"),
        ("--total-timeout -1", "config: total_timeout must be > 0, got -1.0"),
        ("--input missing", "--input missing: no such variable in the notebook"),
        ("-f /no/such/file.http", "-f FILE runs the file; leave the cell empty (or drop -f)"),
        ("--mode 'parallel", "cannot read the magic line"),
    ],
)
def test_a_bad_option_is_a_one_line_usage_error_and_nothing_is_sent(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, line: str, message: str
) -> None:
    ran = run_cell(f"%%orchestrate {line}\n###\n# @name user\nGET {{{{base}}}}/users/1\n")
    assert assert_one_line_failure(ran).startswith(message)
    assert demo.log == []


# -- a failing cell ---------------------------------------------------------------------------

FAILING = (
    "%%orchestrate --mode parallel r <<\n"
    "###\n# @name fine\nGET {{base}}/users/1\n"
    "###\n# @name broken\n# @retry 0\nGET {{base}}/status/500\n"
    "###\n# @name missing\nGET {{base}}/users/0\n"
)


def test_a_failed_endpoint_fails_the_cell_with_one_line_naming_each_failure(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    message = assert_one_line_failure(run_cell(FAILING))
    assert message == (
        "2 of 3 endpoint(s) failed: "
        'broken: HTTP 500: {"status": 500}; missing: HTTP 404: {"error": "not found"}. '
        "the run is stored in `r`; --allow-failures shows failures without failing the cell"
    )
    assert demo.count("/status/500") == 1 and demo.count("/users/1") == 1


def test_a_failing_cell_shows_the_partial_run_and_stores_it(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell(FAILING)
    assert isinstance(ran.error, UsageError)
    assert ran.mimetypes == [
        {"text/html", "text/plain"},
        {PLOTLY, "text/plain"},
        {PLOTLY, "text/plain"},
        {MERMAID, "text/plain"},
    ]
    run = stored(ip)
    assert states(run) == {"fine": "ok", "broken": "failed", "missing": "failed"}
    assert run.data["fine"]["id"] == 1
    assert run.data["broken"]["status"] == 500
    assert ran.stdout == ""


def test_without_a_store_target_the_message_says_how_to_keep_the_run(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    message = assert_one_line_failure(run_cell(FAILING.replace(" r <<", "")))
    assert "add `NAME <<` to the magic line to keep the run" in message


# -- display ------------------------------------------------------------------------------------


def test_the_cell_value_is_the_run_and_displays_summary_table_charts_and_graph(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell(
        "%%orchestrate --mode hybrid\n"
        "###\n# @name login\nPOST {{base}}/auth\n"
        "###\n# @name user\n# @retry 1 10ms\nGET {{base}}/flaky/u?fail=1\n"
        "X-Who: {{login.username}}\n"
    )
    assert ran.result.success
    run = ran.result.result
    assert isinstance(run, Run)
    assert ip.user_ns["_"] is run
    html_bundle, timeline, latency, graph = ran.bundles
    assert run.summary() in html_bundle["text/html"]
    assert "<table" in html_bundle["text/html"]
    assert all(name in html_bundle["text/html"] for name in ("login", "user"))
    for figure in (timeline, latency):
        assert set(figure[PLOTLY]) == {"data", "layout", "config"}
        text = json.dumps(figure[PLOTLY])  # plain JSON, as nbformat stores it
        assert "<script" not in text
        assert "user" in text
    assert graph[MERMAID].startswith("flowchart")
    assert "-->" in graph[MERMAID]
    assert "login" in graph["text/plain"] and "user" in graph["text/plain"]


def test_display_of_a_stored_run_goes_through_the_registered_formatter(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    assert run_cell("%%orchestrate --quiet r <<\n###\n# @name user\nGET {{base}}/users/1\n")
    shown = run_cell("display(r)")
    assert shown.result.success
    assert shown.mimetypes == [
        {"text/html", "text/plain"},
        {PLOTLY, "text/plain"},
        {PLOTLY, "text/plain"},
        {MERMAID, "text/plain"},
    ]
    assert run_cell("r").bundles == shown.bundles


# -- secrets ------------------------------------------------------------------------------------

SECRET = "s3cr3t-Zq9-value"


def test_a_secret_reaches_the_server_but_no_output_record_or_export(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APIORCH_NB_TEST_SECRET", SECRET)
    ran = run_cell(
        "%%orchestrate r <<\n"
        "###\n# @name echo\n"
        "POST {{base}}/echo?sig={{$secret APIORCH_NB_TEST_SECRET}}\n"
        "Authorization: Bearer {{$secret APIORCH_NB_TEST_SECRET}}\n"
        "X-Plain: {{$secret APIORCH_NB_TEST_SECRET}}\n"
        "Content-Type: application/json\n"
        "\n"
        '{"note": "{{$secret APIORCH_NB_TEST_SECRET}}"}\n'
        "###\n# @name user\nGET {{base}}/users/{{echo.json.note}}\n"
    )
    (echo,) = demo.requests("/echo")
    assert echo.headers["Authorization"] == f"Bearer {SECRET}"
    assert echo.headers["X-Plain"] == SECRET
    assert echo.query == {"sig": SECRET}
    assert echo.json == {"note": SECRET}
    assert demo.count(f"/users/{SECRET}") == 1
    # /users/<secret> is a 404, so the failure message and the error column carry it too
    assert isinstance(ran.error, UsageError)
    run = stored(ip)
    views = [
        ran.everything(),
        run.calls.to_csv(),
        run.metrics.to_csv(),
        repr(run),
        run.to_http(),
        run.to_python(),
        json.dumps(run._repr_mimebundle_()),
        str(run.dag()),
    ]
    for view in views:
        assert SECRET not in view
    html = next(b["text/html"] for b in ran.bundles if "text/html" in b)
    assert "[REDACTED]" in html  # the echoed secret was in the responses, scrubbed
    assert "{{$secret APIORCH_NB_TEST_SECRET}}" in run.to_http()
    assert 'os.environ["APIORCH_NB_TEST_SECRET"]' in run.to_python()


def test_literal_credentials_in_a_cell_are_redacted_in_every_display(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell(
        "%%orchestrate r <<\n"
        "###\n# @name echo\n"
        "GET {{base}}/echo?api_key=literal-key-777&page=1\n"
        "Authorization: Bearer literal-token-123\n"
        "Cookie: session=literal-cookie-456\n"
    )
    assert ran.result.success
    (echo,) = demo.requests("/echo")
    assert echo.headers["Authorization"] == "Bearer literal-token-123"
    run = stored(ip)
    shown = ran.everything() + run.calls.to_csv() + run.to_http() + run.to_python()
    for credential in ("literal-token-123", "literal-cookie-456", "literal-key-777"):
        assert credential not in shown, credential
    assert "page" in ran.everything()


def test_a_secret_missing_from_the_environment_is_asked_once_per_kernel(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APIORCH_NB_ASKED_SECRET", raising=False)
    prompts: list[str] = []

    def fake_getpass(prompt: str) -> str:
        prompts.append(prompt)
        return SECRET

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    cell = (
        "%%orchestrate r <<\n###\n# @name me\nGET {{base}}/user\n"
        "Authorization: Bearer {{$secret APIORCH_NB_ASKED_SECRET}}\n"
    )
    first, second = run_cell(cell), run_cell(cell)
    assert first.result.success and second.result.success
    assert len(prompts) == 1 and "APIORCH_NB_ASKED_SECRET" in prompts[0]
    assert [r.headers["Authorization"] for r in demo.requests("/user")] == [f"Bearer {SECRET}"] * 2
    assert SECRET not in first.everything() + second.everything()


def test_a_missing_file_is_a_one_line_usage_error(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell("%orchestrate -f /no/such/file.http")
    assert isinstance(ran.result.error_in_exec, UsageError)
    assert str(ran.result.error_in_exec) == (
        "cannot read /no/such/file.http: No such file or directory"
    )
    assert demo.count() == 0


def test_dry_run_stores_the_plan_and_sends_nothing(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell("%%orchestrate --dry-run plan <<\n###\n# @name user\nGET {{base}}/users/1\n")
    assert ran.result.success
    plan = ip.user_ns["plan"]
    assert [r.state.value for r in plan.records.values()] == ["pending"]
    assert demo.count() == 0

"""The ``%%orchestrate`` cell language run in a shell: every annotation, templates, round trips.

Each test runs real cells against the demo server and asserts what the server saw and what
the stored run holds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from apiorch_nb.demo import DemoServer, max_in_window

from .conftest import RunCell, states, stored

# -- annotations --------------------------------------------------------------------------


def test_name_and_one_word_title_name_the_requests(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell(
        "%%orchestrate r <<\n"
        "### profile\n"
        "GET {{base}}/profile\n"
        "###\n"
        "# @name five\n"
        "GET {{base}}/users/5\n"
        "###\n"
        "GET {{base}}/users/6\n"
    )
    assert ran.result.success
    run = stored(ip)
    assert list(run.records) == ["profile", "five", "request_3"]
    assert run.data["five"]["id"] == 5 and run.data["request_3"]["id"] == 6
    assert [r.path for r in demo.log] == ["/profile", "/users/5", "/users/6"]


def test_depends_on_holds_a_request_back_until_its_dependency_answered(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell(
        "%%orchestrate --mode parallel r <<\n"
        "###\n"
        "# @name slow\n"
        "GET {{base}}/delay/300\n"
        "###\n"
        "# @name after\n"
        "# @depends_on slow\n"
        "GET {{base}}/users/1\n"
        "###\n"
        "# @name free\n"
        "GET {{base}}/users/2\n"
    )
    assert ran.result.success
    (slow,) = demo.requests(prefix="/delay")
    (after,) = demo.requests("/users/1")
    (free,) = demo.requests("/users/2")
    assert after.t - slow.t >= 0.28
    assert free.t - slow.t < 0.2  # not held back: parallel mode
    assert ("slow", "after", "data") in stored(ip).edges


def test_retry_sends_count_plus_one_attempts_to_a_flaky_endpoint(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell(
        "%%orchestrate r <<\n###\n# @name flaky\n# @retry 2 10ms\nGET {{base}}/flaky/k?fail=2\n"
    )
    assert ran.result.success
    assert demo.count("/flaky/k") == 3
    run = stored(ip)
    assert run.data["flaky"] == {"key": "k", "attempt": 3}
    assert [a.status for a in run.records["flaky"].attempts] == [503, 503, 200]


def test_retry_gives_up_after_its_count(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell(
        "%%orchestrate r <<\n###\n# @name flaky\n# @retry 1 10ms\nGET {{base}}/flaky/k?fail=2\n"
    )
    assert isinstance(ran.error, UsageError)
    assert demo.count("/flaky/k") == 2
    assert states(stored(ip)) == {"flaky": "failed"}


def test_retry_on_chooses_which_statuses_are_retried(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell(
        "%%orchestrate --allow-failures r <<\n"
        "###\n"
        "# @name on_404\n"
        "# @retry 2 10ms\n"
        "# @retry_on 404\n"
        "GET {{base}}/flaky/a?fail=1&status=404\n"
        "###\n"
        "# @name not_503\n"
        "# @retry 2 10ms\n"
        "# @retry_on 500\n"
        "GET {{base}}/flaky/b?fail=1&status=503\n"
    )
    assert ran.result.success
    assert demo.count("/flaky/a") == 2  # 404 retried because @retry_on says so
    assert demo.count("/flaky/b") == 1  # 503 not in @retry_on: no second attempt
    assert states(stored(ip)) == {"on_404": "ok", "not_503": "failed"}


def test_timeout_gives_up_on_a_slow_response(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell(
        "%%orchestrate r <<\n###\n# @name slow\n# @timeout 200ms\n# @retry 0\n"
        "GET {{base}}/delay/5000\n"
    )
    assert stored(ip).duration_s < 2
    assert isinstance(ran.error, UsageError)
    assert "slow: no complete response within 0.2s" in str(ran.error)
    assert demo.count("/delay/5000") == 1
    assert states(stored(ip)) == {"slow": "failed"}


def test_rate_limit_windows_hold_across_runs_of_the_cell(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    # The client keeps 2 per 1 s; the server refuses more than 2 per 0.9 s (clock slack).
    cell = (
        "%%orchestrate\n###\n# @name limited\n# @rate_limit 2/1s\n# @retry 0\n"
        "GET {{base}}/limited/rl?limit=2&window=0.9\n"
    )
    for _ in range(5):
        assert run_cell(cell).result.success
    times = [r.t for r in demo.requests("/limited/rl")]
    assert len(times) == 5
    assert demo.violations == []
    assert max_in_window(times, 1.0) <= 2
    assert times[-1] - times[0] >= 1.8  # 5 requests at 2 per second need three windows


def test_burst_spaces_retries_of_one_endpoint(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell(
        "%%orchestrate r <<\n###\n# @name burst\n# @burst 1\n# @retry 1 0s\n"
        "GET {{base}}/flaky/burst?fail=1\n"
    )
    assert ran.result.success
    first, second = (r.t for r in demo.requests("/flaky/burst"))
    assert second - first >= 0.9  # one request per second, although the retry delay is 0
    assert stored(ip).calls["wait_ms"].max() >= 800


def test_cache_answers_the_second_run_without_sending(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    cell = "%%orchestrate r <<\n###\n# @name user\n# @cache 60s\nGET {{base}}/users/3\n"
    assert run_cell(cell).result.success
    assert run_cell(cell).result.success
    assert demo.count("/users/3") == 1
    run = stored(ip)
    assert states(run) == {"user": "cached"}
    assert run.data["user"]["id"] == 3
    assert bool(run.calls["cache_hit"].iloc[0])


def test_condition_false_skips_the_request_and_it_is_never_sent(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ip.user_ns["never"] = lambda ctx: False
    ip.user_ns["is_premium"] = lambda ctx: ctx["user"]["user_type"] == "premium"
    ran = run_cell(
        "%%orchestrate --mode conditional r <<\n"
        "###\n# @name user\nGET {{base}}/users/3\n"
        "###\n# @name skipped\n# @condition never\nGET {{base}}/users/4\n"
        "###\n# @name perks\n# @condition is_premium\nGET {{base}}/data/perks\n"
    )
    assert ran.result.success
    assert [r.path for r in demo.log] == ["/users/3", "/data/perks"]
    run = stored(ip)
    assert states(run) == {"user": "ok", "skipped": "skipped", "perks": "ok"}
    assert "skipped" not in run.data


def test_transform_input_shapes_what_a_post_sends(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ip.user_ns["payload"] = {"amount": 12}
    ip.user_ns["add_currency"] = lambda data: {**data, "currency": "EUR"}
    ran = run_cell(
        "%%orchestrate --input payload r <<\n"
        "###\n# @name echo\n# @transform_input add_currency\nPOST {{base}}/echo\n"
    )
    assert ran.result.success
    (request,) = demo.requests("/echo")
    assert request.json == {"amount": 12, "currency": "EUR"}


def test_transform_output_and_parser_shape_what_the_run_keeps(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ip.user_ns["only_email"] = lambda user: user["email"]
    ip.user_ns["status_and_type"] = lambda response: (response.status, response.content_type)
    ran = run_cell(
        "%%orchestrate r <<\n"
        "###\n# @name email\n# @transform_output only_email\nGET {{base}}/users/8\n"
        "###\n# @name raw\n# @parser status_and_type\nGET {{base}}/users/9\n"
    )
    assert ran.result.success
    assert stored(ip).data == {"email": "user8@example.com", "raw": (200, "application/json")}
    assert demo.count(prefix="/users/") == 2


def test_on_error_rescues_a_failure_into_the_run_data(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ip.user_ns["fallback"] = lambda exc: {"fallback": True, "status": exc.status}
    ran = run_cell(
        "%%orchestrate r <<\n###\n# @name down\n# @retry 0\n# @on_error fallback\n"
        "GET {{base}}/status/500\n"
    )
    assert ran.result.success  # a rescued failure does not fail the cell
    run = stored(ip)
    assert run.data == {"down": {"fallback": True, "status": 500}}
    assert run.records["down"].rescued
    assert demo.count("/status/500") == 1


# -- templates ----------------------------------------------------------------------------

LOGIN = '###\n# @name login\nPOST {{base}}/auth\n\n{"username": "ada"}\n'


@pytest.mark.parametrize(
    "reference", ["{{login.response.body.$.token}}", "{{login.token}}"], ids=["full", "short"]
)
def test_a_response_reference_sends_the_value_and_waits_for_its_request(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, reference: str
) -> None:
    ran = run_cell(
        "%%orchestrate --mode parallel r <<\n"
        "###\n# @name me\nGET {{base}}/user\n"
        f"Authorization: Bearer {reference}\n" + LOGIN
    )
    assert ran.result.success
    assert [r.path for r in demo.log] == ["/auth", "/user"]  # listed first, sent second
    assert demo.requests("/user")[0].headers["Authorization"] == "Bearer demo-token-ada"
    assert stored(ip).data["me"] == {"id": 1, "username": "ada"}


def test_templates_fill_from_input_notebook_and_environment(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ip.user_ns["payload"] = {"user_id": 7}
    ip.user_ns["post_id"] = 31
    monkeypatch.setenv("APIORCH_NB_TEST_SOURCE", "env-source")
    ran = run_cell(
        "%%orchestrate --input payload r <<\n"
        "###\n# @name user\nGET {{base}}/users/{{user_id}}\n"
        "###\n# @name post\nGET {{base}}/posts?user_id={{post_id}}\n"
        "###\n# @name env\nGET {{base}}/data/{{APIORCH_NB_TEST_SOURCE}}\n"
    )
    assert ran.result.success
    assert [(r.path, r.query) for r in demo.log] == [
        ("/users/7", {}),
        ("/posts", {"user_id": "31"}),
        ("/data/env-source", {}),
    ]


def test_resolution_order_is_request_input_notebook_environment(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ip.user_ns["payload"] = {"a": "from-input"}
    for name in ("a", "b", "login"):
        ip.user_ns[name] = f"{name}-from-notebook"
    for name in ("a", "b", "c"):
        monkeypatch.setenv(name, f"{name}-from-env")
    ran = run_cell(
        "%%orchestrate --input payload r <<\n"
        + LOGIN
        + "###\n# @name probe\nGET {{base}}/echo?a={{a}}&b={{b}}&c={{c}}&login={{login.username}}\n"
    )
    assert ran.result.success
    assert demo.requests("/echo")[0].query == {
        "a": "from-input",
        "b": "b-from-notebook",
        "c": "c-from-env",
        "login": "ada",
    }


def test_an_unresolved_name_fails_the_cell_naming_the_line_and_sends_nothing(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell(
        "%%orchestrate r <<\n"
        "###\n# @name fine\nGET {{base}}/users/1\n"
        "###\n# @name broken\nGET {{base}}/users/{{user_idd}}\n"
    )
    assert isinstance(ran.error, UsageError)
    message = str(ran.error)
    assert message.splitlines() == [
        "line 7: {{user_idd}} is not a request in this cell, a @variable, an input field, "
        "a notebook variable or an environment variable",
        "    GET {{base}}/users/{{user_idd}}",
        "                       ^^^^^^^^^^^^",
    ]
    assert ran.stderr.startswith("UsageError: line 7:")
    assert "Traceback" not in ran.everything()
    assert demo.log == []
    assert "r" not in ip.user_ns


# -- the .http round trip -------------------------------------------------------------------

ROUND_TRIP_CELL = (
    "%%orchestrate --mode hybrid --max-concurrent 3 r <<\n@page = 2\n" + LOGIN + "###\n"
    "# @name me\n"
    "# @retry 2 50ms\n"
    "# @timeout 5s\n"
    "GET {{base}}/user\n"
    "Authorization: Bearer {{login.token}}\n"
    "###\n"
    "# @name users\n"
    "# @depends_on login\n"
    "GET {{base}}/users\n"
    "    ?limit={{page}}\n"
    "    &tag=a b\n"
    "Accept: application/json\n"
    "###\n"
    "# @name enrich\n"
    "POST {{base}}/enrich\n"
    "Content-Type: application/json\n"
    "\n"
    '{"user": "{{me.username}}", "tags": ["x", "y"], "n": 3}\n'
)


def sent(demo: DemoServer) -> list[tuple[str, str, dict[str, str], object, str | None]]:
    """What the server saw, in a comparable form, sorted (parallel runs may reorder)."""
    return sorted(
        ((r.method, r.path, r.query, r.json, r.headers.get("Authorization")) for r in demo.log),
        key=lambda call: (call[0], call[1], sorted(call[2].items())),
    )


def test_to_http_runs_again_with_the_same_calls(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, tmp_path: Path
) -> None:
    assert run_cell(ROUND_TRIP_CELL).result.success
    first = sent(demo)
    assert ("POST", "/enrich", {}, {"user": "ada", "tags": ["x", "y"], "n": 3}, None) in first
    assert ("GET", "/users", {"limit": "2", "tag": "a b"}, None, None) in first
    assert ("GET", "/user", {}, None, "Bearer demo-token-ada") in first
    path = tmp_path / "again.http"
    path.write_text(stored(ip).to_http(), encoding="utf-8")
    demo.reset()
    ran = run_cell(f"%orchestrate -f {path} --mode hybrid again <<")
    assert ran.result.success, ran.stderr
    assert sent(demo) == first
    assert list(stored(ip, "again").records) == list(stored(ip).records)
    assert stored(ip, "again").data == stored(ip).data


def test_to_python_runs_in_a_subprocess_with_the_same_calls(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, tmp_path: Path
) -> None:
    assert run_cell(ROUND_TRIP_CELL).result.success
    first = sent(demo)
    script = tmp_path / "again.py"
    script.write_text(stored(ip).to_python(), encoding="utf-8")
    demo.reset()
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert sent(demo) == first

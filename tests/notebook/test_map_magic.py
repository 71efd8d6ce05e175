"""``%%orchestrate --over``: a cell's requests once per row, through a real shell.

Each test runs real cells against the demo server and asserts what the server saw, the
frame stored with ``NAME <<`` and what the cell showed or raised.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from apiorch_nb import APIOrchestrator
from apiorch_nb.demo import DemoServer, max_in_window
from apiorch_nb.notebook import _map_cell
from apiorch_nb.notebook._map_progress import MapProgress, map_progress_observer

from .conftest import RunCell, assert_one_line_failure

USER = "###\n# @name user\n# @retry 0\nGET {{base}}/users/{{id}}\n"
POSTS = "###\n# @name posts\nGET {{base}}/users/{{id}}/posts\n"
STATUS = "###\n# @name call\n# @retry 0\nGET {{base}}/status/{{code}}\n"
DELAY = "###\n# @name wait\nGET {{base}}/delay/{{ms}}\n"


def frame(ip: InteractiveShell, name: str = "r") -> pd.DataFrame:
    stored = ip.user_ns[name]
    assert isinstance(stored, pd.DataFrame)
    return stored


@pytest.fixture
def people(ip: InteractiveShell) -> pd.DataFrame:
    df = pd.DataFrame({"id": [3, 1, 4, 2]}, index=pd.Index(["c", "a", "d", "b"], name="key"))
    ip.user_ns["people"] = df
    return df


# -- rows in, a frame out ----------------------------------------------------------------------


def test_over_a_dataframe_runs_once_per_row_and_stores_a_frame_aligned_with_it(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, people: pd.DataFrame
) -> None:
    ran = run_cell("%%orchestrate --over people r <<\n" + USER + POSTS)
    assert ran.result.success, ran.stderr
    result = frame(ip)
    assert ran.result.result is result  # the cell's value is the frame
    assert list(result.index) == ["c", "a", "d", "b"] and result.index.name == "key"
    assert list(result.columns) == ["user", "posts", "status", "error"]
    assert [u["id"] for u in result["user"]] == [3, 1, 4, 2]
    assert list(result["status"]) == ["ok"] * 4
    assert sorted(r.path for r in demo.requests(prefix="/users")) == sorted(
        [f"/users/{i}" for i in (1, 2, 3, 4)] + [f"/users/{i}/posts" for i in (1, 2, 3, 4)]
    )
    (summary,) = [b["text/plain"] for b in ran.bundles if set(b) == {"text/plain"}]
    assert summary.startswith("4 rows (4 ok) in ")
    assert people.join(result)["user"].map(lambda u: u["name"]).tolist()[0] == "User 3"


def test_over_a_list_of_dicts_sends_each_row_as_the_input(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ip.user_ns["orders"] = [{"order_id": 7, "amount": 5}, {"order_id": 8, "amount": 9}]
    ran = run_cell(
        "%%orchestrate --over orders --fields echo.json.order_id r <<\n"
        + ("###\n# @name echo\nPOST {{base}}/echo?order={{order_id}}\n")
    )
    assert ran.result.success, ran.stderr
    assert sorted((r.query["order"], r.json["amount"]) for r in demo.requests("/echo")) == [
        ("7", 5),
        ("8", 9),
    ]
    assert frame(ip).to_dict("list") == {
        "echo.json.order_id": [7, 8],
        "status": ["ok", "ok"],
        "error": [None, None],
    }


def test_fields_choose_the_columns_by_path_or_as_name_equals_path(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, people: pd.DataFrame
) -> None:
    ran = run_cell(
        '%%orchestrate --over people --fields "name=user.name, posts.posts.0.title" r <<\n'
        + USER
        + POSTS
    )
    assert ran.result.success, ran.stderr
    result = frame(ip)
    assert list(result.columns) == ["name", "posts.posts.0.title", "status", "error"]
    assert result.loc["a", "name"] == "User 1"
    assert result.loc["d", "posts.posts.0.title"] == "Post 1 by user 4"


def test_quiet_map_shows_nothing_and_stores_the_frame(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, people: pd.DataFrame
) -> None:
    ran = run_cell("%%orchestrate --over people --quiet r <<\n" + USER)
    assert ran.result.success and ran.result.result is None
    assert (ran.outputs, ran.stdout, ran.stderr) == ([], "", "")
    assert list(frame(ip)["status"]) == ["ok"] * 4


# -- failed rows -------------------------------------------------------------------------------

CODES = pd.DataFrame({"code": [200, 503, 200, 503, 204]})


def test_failed_rows_fail_the_cell_in_one_line_after_storing_the_frame(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ip.user_ns["codes"] = CODES
    message = assert_one_line_failure(run_cell("%%orchestrate --over codes r <<\n" + STATUS))
    assert message == (
        '2 of 5 rows failed (first: row 1: call: HTTP 503: {"status": 503}); '
        "the result is stored in `r`, see r.status and r.error; "
        "--allow-failures shows failures without failing the cell"
    )
    result = frame(ip)
    assert list(result["status"]) == ["ok", "failed", "ok", "failed", "ok"]
    assert result["error"].tolist()[1] == 'call: HTTP 503: {"status": 503}'
    assert demo.count(prefix="/status") == 5  # one request per row, no retries


def test_allow_failures_keeps_the_cell_green_and_notes_the_failed_rows(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ip.user_ns["codes"] = CODES
    ran = run_cell("%%orchestrate --over codes --allow-failures r <<\n" + STATUS)
    assert ran.result.success and ran.stderr == ""
    assert ran.result.result is frame(ip)
    (summary,) = [b["text/plain"] for b in ran.bundles if set(b) == {"text/plain"}]
    assert summary.startswith("5 rows (3 ok, 2 failed) in ")
    assert summary.endswith("; 2 of 5 rows failed (see r.status)")


# -- stopped early: nothing lost ---------------------------------------------------------------

SLOW_TAIL = pd.DataFrame({"ms": [10, 10, 10, 5000, 5000, 5000]})


def test_an_interrupted_map_stores_every_finished_row_and_fails_in_one_line(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, tmp_path: Path
) -> None:
    # What the stop button does in a kernel: cancel the cell's task while the map runs.
    ip.user_ns["rows"] = SLOW_TAIL
    path = tmp_path / "wait.http"
    path.write_text(DELAY, encoding="utf-8")
    ran = run_cell(
        "import asyncio\n"
        "asyncio.get_running_loop().call_later(0.5, asyncio.current_task().cancel)\n"
        f"%orchestrate -f {path} --over rows --max-concurrent 3 r <<\n"
    )
    message = assert_one_line_failure(ran)
    assert message == "interrupted after 3 of 6 rows; stored the partial result in `r`"
    assert list(frame(ip)["status"]) == ["ok"] * 3 + ["cancelled"] * 3
    assert frame(ip)["wait"].tolist()[:3] == [{"delayed_ms": 10}] * 3
    assert demo.count(prefix="/delay") == 6
    html = next(b["text/html"] for b in ran.bundles if "text/html" in b)
    assert "6 rows (3 ok, 3 cancelled)" in html and "<table" in html  # the partial map shown


def test_map_timeout_stores_the_partial_frame_and_fails_in_one_line(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ip.user_ns["rows"] = SLOW_TAIL
    ran = run_cell("%%orchestrate --over rows --max-concurrent 3 --map-timeout 0.5 r <<\n" + DELAY)
    assert assert_one_line_failure(ran) == (
        "map timeout of 0.5s ran out after 3 of 6 rows; 3 cancelled, 0 not started; "
        "stored the partial result in `r`"
    )
    assert list(frame(ip)["status"]) == ["ok"] * 3 + ["cancelled"] * 3


# -- backends by URL ---------------------------------------------------------------------------


def test_a_sqlite_cache_answers_a_rerun_even_after_the_extension_is_reloaded(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, people: pd.DataFrame, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/api.db"
    cell = f"%%orchestrate --over people --cache {url} --cache-ttl 600 r <<\n" + USER
    assert run_cell(cell).result.success
    assert demo.count(prefix="/users") == 4
    magics = ip.magics_manager.registry["OrchestrateMagics"]
    kept = magics.backends.cache(url)
    assert run_cell(cell).result.success
    assert magics.backends.cache(url) is kept  # one backend per URL, not one per cell
    assert demo.count(prefix="/users") == 4  # the re-run sent nothing
    assert list(frame(ip)["status"]) == ["cached"] * 4
    # a fresh extension (as after a kernel restart) reads the same file, set by %config
    assert run_cell("%reload_ext apiorch_nb").result.success
    assert run_cell(f'%config OrchestrateMagics.cache = "{url}"').result.success
    assert run_cell(cell.replace(f" --cache {url}", "")).result.success
    assert demo.count(prefix="/users") == 4
    assert list(frame(ip)["user"].map(lambda u: u["id"])) == [3, 1, 4, 2]


def test_a_redis_limiter_holds_the_rate_across_rows(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer, redis_url: str
) -> None:
    ip.user_ns["rows"] = pd.DataFrame({"i": range(6)})
    cell = (
        f"%%orchestrate --over rows --limiter {redis_url} --rate-limit 3/1s r <<\n"
        "###\n# @name hit\n# @retry 0\nGET {{base}}/limited/m?limit=3&window=0.9&i={{i}}\n"
    )
    assert run_cell(cell).result.success
    times = sorted(r.t for r in demo.requests("/limited/m"))
    assert len(times) == 6 and demo.violations == []
    assert max_in_window(times, 1.0) <= 3
    magics = ip.magics_manager.registry["OrchestrateMagics"]
    assert type(magics.backends.limiter(redis_url)).__name__ == "RedisRateLimiter"


# -- mistakes are one line and send nothing ----------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--over missing", "--over missing: no such variable in the notebook"),
        ("--over base", "--over base: expected a DataFrame or a list of dicts, got str"),
        ("--over people --input people", "--over runs once per row and each row is that run's"),
        ("--fields user.name", "--fields is for maps; add --over VAR to run once per row"),
        ("--map-timeout 3", "--map-timeout is for maps; add --over VAR to run once per row"),
        ("--over people --map-timeout 0", "--map-timeout must be > 0 seconds, got 0"),
        ("--over people --fields nope.x", "--fields: field 'nope.x' reads 'nope.x', but no"),
        ("--over people --fields status=user.id", "--fields: field column 'status' is reserved"),
        ("--over people --fields a=,b", "--fields takes comma-separated paths like"),
        ("--over people --fields a=user.id,a=user.name", "--fields names the column 'a' twice"),
        ("--cache ftp://x", "--cache 'ftp://x': use one of memory, sqlite://..., redis://..."),
        ("--limiter sqlite:///x.db", "--limiter 'sqlite:///x.db': use one of memory, redis://"),
        ("--over people --cache sqlite:///never.db", "--cache sqlite:///never.db: nothing is"),
    ],
)
def test_a_bad_map_option_is_a_one_line_usage_error_and_nothing_is_sent(
    ip: InteractiveShell,
    run_cell: RunCell,
    demo: DemoServer,
    people: pd.DataFrame,
    line: str,
    message: str,
) -> None:
    ran = run_cell(f"%%orchestrate {line} r <<\n" + USER)
    assert assert_one_line_failure(ran).startswith(message)
    assert demo.log == []
    assert "r" not in ip.user_ns
    assert not Path("never.db").exists()


def test_config_refuses_a_backend_url_of_the_wrong_kind(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    assert run_cell('%config OrchestrateMagics.limiter = "sqlite:///x.db"').result.success
    assert ip.magics_manager.registry["OrchestrateMagics"].limiter == "memory"


# -- live progress, the extension's hooks and the MapRun display -------------------------------


def test_progress_is_displayed_empty_filled_by_updates_and_emptied_at_the_end(
    ip: InteractiveShell,
    run_cell: RunCell,
    demo: DemoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Outside a kernel the magic shows no progress; here it does, as in a kernel.
    monkeypatch.setattr(_map_cell, "map_progress_observer", MapProgress)
    ip.user_ns["rows"] = pd.DataFrame({"ms": [50 + 120 * i for i in range(6)]})
    ran = run_cell("%%orchestrate --over rows --max-concurrent 6 r <<\n" + DELAY)
    assert ran.result.success, ran.stderr
    bars = [o for o in ran.outputs if o.transient and "display_id" in o.transient]
    first, *updates = bars
    assert (first.update, first.data) == (False, {"text/plain": ""})
    texts = [u.data["text/plain"] for u in updates]
    assert texts[0].startswith("0/6 rows done; ")
    assert any(t.startswith(("2/6", "3/6", "4/6")) and "rows/s, ETA" in t for t in texts)
    assert "apiorch-progress" in updates[0].data["text/html"]
    assert updates[-1].data == {"text/plain": ""}
    assert run_cell("%%orchestrate --over rows --quiet\n" + DELAY).outputs == []


def test_the_extension_sets_the_default_map_observer_and_unload_restores_it(
    ip: InteractiveShell, run_cell: RunCell
) -> None:
    assert APIOrchestrator.default_map_observer is map_progress_observer
    assert map_progress_observer() is None  # not a kernel: nothing to draw into
    assert run_cell("%unload_ext apiorch_nb").result.success
    assert APIOrchestrator.default_map_observer is None


def test_a_map_run_displays_its_summary_and_first_rows(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ip.user_ns["many"] = [{"id": i} for i in range(1, 13)]
    ran = run_cell(
        "from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator\n"
        "o = APIOrchestrator(APIOrchestrationConfig(endpoints=[\n"
        "    APIEndpoint(name='user', url=base + '/users/{id}')]))\n"
        "df = await o.map(many, fields={'name': 'user.name'})\n"
        "await o.close()\n"
        "o.last_map\n"
    )
    assert ran.result.success, ran.stderr
    (bundle,) = ran.bundles
    assert set(bundle) == {"text/html", "text/plain"}
    assert bundle["text/html"].startswith('<div class="apiorch-map"><p>12 rows (12 ok) in ')
    assert bundle["text/html"].count("</tr>") == 11  # header and the first 10 rows
    assert "User 10" in bundle["text/html"] and "User 11" not in bundle["text/html"]
    assert "<script" not in bundle["text/html"]
    assert bundle["text/plain"].endswith("... 2 more rows")
    assert demo.count(prefix="/users") == 12


def test_a_bad_option_does_not_reach_the_engine(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    ran = run_cell("%%orchestrate --over\n" + USER)
    assert isinstance(ran.error, UsageError)
    assert "argument -o/--over: expected one argument" in str(ran.error)

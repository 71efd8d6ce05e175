"""``%load_ext`` / ``%unload_ext`` / ``%reload_ext apiorch_nb``, import cost, terminal IPython."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from apiorch_nb import Run
from apiorch_nb.demo import DemoServer

from .conftest import Ran

RunCell = Callable[[str], Ran]
CELL = "%%orchestrate r <<\n###\n# @name user\nGET {{base}}/users/5\n"
IPYTHON = str(Path(sys.executable).with_name("ipython"))


def shell_state(ip: InteractiveShell) -> dict[str, Any]:
    """Everything the extension may touch, in a comparable form."""
    return {
        "line magics": dict(ip.magics_manager.magics["line"]),
        "cell magics": dict(ip.magics_manager.magics["cell"]),
        "registry": dict(ip.magics_manager.registry),
        "configurables": list(ip.configurables),
        "input transformers": list(ip.input_transformers_cleanup),
        "display printers": dict(ip.display_formatter.ipython_display_formatter.type_printers),
        "matchers": list(ip.Completer.custom_matchers),
        "custom exception types": ip.custom_exceptions,
        "custom exception handler": ip.CustomTB,
        "sigint": signal.getsignal(signal.SIGINT),
        "attributes": {name for name in vars(ip) if "apiorch" in name},
    }


def test_loading_twice_registers_everything_once(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    loaded = shell_state(ip)
    assert run_cell("%load_ext apiorch_nb").result.success
    assert shell_state(ip) == loaded
    ran = run_cell(CELL)
    assert ran.result.success
    assert demo.count("/users/5") == 1
    assert len(ran.bundles) == 4  # shown once


def test_unload_removes_everything_and_restores_the_shell_exactly(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    assert run_cell("%unload_ext apiorch_nb").result.success
    before = shell_state(ip)
    assert run_cell("%load_ext apiorch_nb").result.success
    loaded = shell_state(ip)
    assert "orchestrate" in loaded["cell magics"] and "orchestrate" in loaded["line magics"]
    assert "OrchestrateMagics" in loaded["registry"]
    assert Run in loaded["display printers"]
    assert len(loaded["matchers"]) == len(before["matchers"]) + 1
    assert RuntimeError in loaded["custom exception types"]
    assert run_cell("%unload_ext apiorch_nb").result.success
    after = shell_state(ip)
    for key, value in before.items():
        assert after[key] == value, key
    ran = run_cell(CELL)
    assert isinstance(ran.error, UsageError)
    assert "Cell magic `%%orchestrate` not found" in str(ran.error)
    line = run_cell("%orchestrate -f requests.http")
    assert isinstance(line.error, UsageError)
    assert demo.log == []


def test_config_defaults_no_longer_reach_an_unloaded_extension(
    ip: InteractiveShell, run_cell: RunCell
) -> None:
    magics = ip.magics_manager.registry["OrchestrateMagics"]
    assert run_cell("%unload_ext apiorch_nb").result.success
    assert run_cell('%config OrchestrateMagics.mode = "parallel"').result.success
    assert magics.mode == "sequential"


def test_reload_gives_one_working_registration(
    ip: InteractiveShell, run_cell: RunCell, demo: DemoServer
) -> None:
    loaded = shell_state(ip)
    first = ip.magics_manager.registry["OrchestrateMagics"]
    assert run_cell("%reload_ext apiorch_nb").result.success
    reloaded = shell_state(ip)
    assert ip.magics_manager.registry["OrchestrateMagics"] is not first
    for key in ("input transformers", "matchers", "configurables", "display printers"):
        assert len(reloaded[key]) == len(loaded[key]), key
    for key in ("custom exception types", "sigint", "attributes"):
        assert reloaded[key] == loaded[key], key
    ran = run_cell(CELL)
    assert ran.result.success
    assert demo.count("/users/5") == 1
    assert len(ran.bundles) == 4


LOAD_TIME_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    from IPython.core.interactiveshell import InteractiveShell

    HEAVY = ("pandas", "plotly", "numpy", "ipywidgets")
    ip = InteractiveShell.instance()
    before = time.perf_counter()
    ip.run_line_magic("load_ext", "apiorch_nb")
    load_ms = (time.perf_counter() - before) * 1000
    after_load = [m for m in HEAVY if m in sys.modules]
    ip.user_ns["base"] = os.environ["APIORCH_NB_BASE"]
    cell = "%%orchestrate --quiet r <<\\n###\\n# @name user\\nGET {{base}}/users/1\\n"
    result = ip.run_cell(cell)
    assert result.success, result.error_in_exec
    after_quiet_run = [m for m in HEAVY if m in sys.modules]
    ip.run_cell("r")
    after_display = [m for m in HEAVY if m in sys.modules]
    ip.run_cell("r.calls")
    after_calls = [m for m in HEAVY if m in sys.modules]
    print(json.dumps({"load_ms": load_ms, "after_load": after_load,
                      "after_quiet_run": after_quiet_run, "after_display": after_display,
                      "after_calls": after_calls}))
    """
)


def test_load_ext_imports_no_pandas_or_plotly_until_a_run_needs_them(
    demo: DemoServer, tmp_path: Path
) -> None:
    env = {**os.environ, "APIORCH_NB_BASE": demo.url, "IPYTHONDIR": str(tmp_path / "ipython")}
    done = subprocess.run(
        [sys.executable, "-c", LOAD_TIME_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"%load_ext apiorch_nb took {report['load_ms']:.1f} ms in a fresh interpreter")
    assert report["after_load"] == []
    assert report["after_quiet_run"] == []
    assert "plotly" in report["after_display"]  # the charts; the tables need no pandas
    assert "pandas" in report["after_calls"]
    assert demo.count("/users/1") == 1


@pytest.fixture
def terminal_env(demo: DemoServer, tmp_path: Path) -> dict[str, str]:
    """Environment for a terminal IPython: its own profile dir, the demo URL in a variable."""
    return {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython"), "APIORCH_NB_BASE": demo.url}


TERMINAL_CELL = "%%orchestrate r <<\n###\n# @name user\nGET {{APIORCH_NB_BASE}}/users/7\n"


def test_terminal_ipython_runs_a_cell_and_shows_the_run_as_text(
    demo: DemoServer, terminal_env: dict[str, str]
) -> None:
    done = subprocess.run(
        [IPYTHON, "--no-banner", "--colors=nocolor", "--ext", "apiorch_nb", "-c", TERMINAL_CELL],
        capture_output=True,
        text=True,
        timeout=60,
        env=terminal_env,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert "Run (sequential, ok): 1 calls (1 ok)" in done.stdout
    assert "dependency graph (sequential): 1 endpoints" in done.stdout
    assert [r.path for r in demo.log] == ["/users/7"]


def test_terminal_ipython_runs_an_ipy_file(
    demo: DemoServer, terminal_env: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "cell.ipy"
    script.write_text(TERMINAL_CELL + "\n", encoding="utf-8")
    done = subprocess.run(
        [IPYTHON, "--no-banner", "--colors=nocolor", "--ext", "apiorch_nb", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=terminal_env,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert [r.path for r in demo.log] == ["/users/7"]


def test_a_failing_cell_in_terminal_ipython_prints_one_line_and_exits_non_zero(
    demo: DemoServer, terminal_env: dict[str, str]
) -> None:
    cell = "%%orchestrate\n###\n# @name down\n# @retry 0\nGET {{APIORCH_NB_BASE}}/status/503\n"
    done = subprocess.run(
        [IPYTHON, "--no-banner", "--colors=nocolor", "--ext", "apiorch_nb", "-c", cell],
        capture_output=True,
        text=True,
        timeout=60,
        env=terminal_env,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("UsageError: 1 of 1 endpoint(s) failed: down: HTTP 503")
    assert done.stderr.strip().count("\n") == 0
    assert "Traceback" not in done.stdout + done.stderr
    assert "Run (sequential, with failures)" in done.stdout  # the partial run, as text
    assert demo.count("/status/503") == 1

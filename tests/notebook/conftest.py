"""An in-process IPython shell with the extension loaded, and a way to run cells in it.

The shell is IPython's own `InteractiveShell` (a singleton, so one per session). Cells run
through ``run_cell`` exactly as a kernel runs them: the input transformers rewrite
``%%orchestrate`` into a top-level ``await``, IPython's asyncio runner awaits it, and a
failed endpoint comes back as ``result.error_in_exec`` (a `UsageError`) with its one line
on stderr. Every test gets the extension freshly loaded (its cache, limiter and secrets
start empty) and a user namespace without the previous test's names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import ExecutionResult, InteractiveShell
from IPython.utils.capture import CapturedIO, RichOutput, capture_output

from apiorch_nb import Run
from apiorch_nb.demo import DemoServer

PLOTLY = "application/vnd.plotly.v1+json"
MERMAID = "text/vnd.mermaid"


@dataclass
class Ran:
    """One executed cell: IPython's result and everything the cell wrote or displayed."""

    result: ExecutionResult
    captured: CapturedIO
    bundles: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.bundles = [dict(out.data) for out in self.outputs]

    @property
    def outputs(self) -> list[RichOutput]:
        return list(self.captured.outputs)

    @property
    def stdout(self) -> str:
        return self.captured.stdout

    @property
    def stderr(self) -> str:
        return self.captured.stderr

    @property
    def error(self) -> BaseException | None:
        return self.result.error_in_exec or self.result.error_before_exec

    @property
    def mimetypes(self) -> list[set[str]]:
        """The mimetypes of each displayed bundle, in display order."""
        return [set(bundle) for bundle in self.bundles]

    def everything(self) -> str:
        """stdout, stderr and every display bundle as one text, to search for leaks."""
        parts = [self.stdout, self.stderr]
        parts += [json.dumps(bundle, default=str) for bundle in self.bundles]
        return "\n".join(parts)


@pytest.fixture(scope="session")
def shell() -> InteractiveShell:
    """IPython's interactive shell (a process-wide singleton)."""
    return InteractiveShell.instance()


@pytest.fixture
def ip(shell: InteractiveShell, demo: DemoServer) -> Iterator[InteractiveShell]:
    """The shell with ``apiorch_nb`` freshly loaded and ``base`` set to the demo server URL.

    Afterwards the extension is unloaded (a test may have unloaded it already), every name
    the test added to the user namespace is removed, and ``%config OrchestrateMagics``
    settings are forgotten.
    """
    names_before = set(shell.user_ns)
    shell.run_line_magic("load_ext", "apiorch_nb")
    shell.user_ns["base"] = demo.url
    try:
        yield shell
    finally:
        if "apiorch_nb" in shell.extension_manager.loaded:
            shell.run_line_magic("unload_ext", "apiorch_nb")
        for name in set(shell.user_ns) - names_before:
            del shell.user_ns[name]
        shell.config.pop("OrchestrateMagics", None)


@pytest.fixture
def run_cell(ip: InteractiveShell) -> Callable[[str], Ran]:
    """Run one cell the way a kernel does and capture what it printed and displayed."""

    def run(code: str) -> Ran:
        with capture_output(stdout=True, stderr=True, display=True) as captured:
            result = ip.run_cell(code, store_history=True)
        return Ran(result, captured)

    return run


# -- helpers shared by the notebook test modules --------------------------------------------

RunCell = Callable[[str], "Ran"]  # the run_cell fixture


def stored(ip: InteractiveShell, name: str = "r") -> Run:
    """The Run a cell stored with ``name <<``."""
    run = ip.user_ns[name]
    assert isinstance(run, Run)
    return run


def states(run: Run) -> dict[str, str]:
    return {name: record.state.value for name, record in run.records.items()}


def assert_one_line_failure(ran: Ran) -> str:
    """The cell failed with a UsageError printed as one line and no traceback; its text."""
    assert not ran.result.success
    assert isinstance(ran.error, UsageError)
    assert ran.stderr.strip() == f"UsageError: {ran.error}"
    assert "\n" not in str(ran.error)
    assert "Traceback" not in ran.everything()
    return str(ran.error)

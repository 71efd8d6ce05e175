"""Starting, cancelling and finishing the builder's runs, and the guard on every callback.

A run is one `asyncio` task on the running loop (the kernel's). The engine records every
call, cancelled ones too, and the panel shows the result whatever way the run ended.

ipywidgets logs and forgets an exception raised in a click handler, and the engine detaches
an observer that raises; so every callback the builder installs goes through `guard`,
which keeps the exception in ``last_error`` and shows it. An exception raised inside a run
(a live redraw, showing the results, an ``on_run_finished`` callback) also ends the run's
task with it, after the results are shown, so awaiting ``builder.task`` raises it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TypeVar

from .._export_python import _secret_refs, _template_fields
from ..config import APIOrchestrationConfig
from ..errors import ConfigError, OrchestrationError
from ..orchestrator import APIOrchestrator
from ..run import Run
from ._builder_run import RunPanel

F = TypeVar("F", bound=Callable[..., Any])
#: True in a run's task (and the loop callbacks it schedules): errors end the task too.
_IN_RUN: contextvars.ContextVar[bool] = contextvars.ContextVar("apiorch_in_run", default=False)
CANCELLING = "Cancelling…"


class RunControl:
    """The task, the last run, the last error and a one-line note for the status."""

    def __init__(self, render: Callable[[], None]) -> None:
        self._render = render
        self.panel = RunPanel(self.guard)
        self.task: asyncio.Task[None] | None = None
        self.run: Run | None = None
        self.last_error: BaseException | None = None
        self.note = ""
        self.running = False
        self.callbacks: list[Callable[[Run], Any]] = []
        self._cancel_requested = False
        self._run_errors: list[BaseException] = []

    def guard(self, func: F) -> F:
        """`func`, with any exception kept in `last_error` and shown instead of lost."""

        @functools.wraps(func)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                self.last_error = exc
                if _IN_RUN.get():
                    self._run_errors.append(exc)
                self._render()
                return None

        return guarded  # type: ignore[return-value]

    def start(
        self,
        config: APIOrchestrationConfig,
        data: Any,
        secrets: dict[str, str],
        namespace: MutableMapping[str, Any],
        store: str | None,
    ) -> asyncio.Task[None]:
        """Create the run's task on the running loop.

        Raises:
            RuntimeError: no running event loop (a Jupyter kernel always has one).
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "Run needs a running asyncio event loop, as a Jupyter kernel has"
            ) from None
        self.running, self._cancel_requested, self.note = True, False, ""
        self.last_error, self._run_errors = None, []
        self.task = loop.create_task(self._execute(config, data, secrets, namespace, store))
        self.task.add_done_callback(self.guard(self._task_done))
        return self.task

    def cancel(self) -> bool:
        """Cancel the running task; False if there is none."""
        if self.task is None or self.task.done():
            return False
        self._cancel_requested = True
        self.note = CANCELLING
        self.task.cancel()
        return True

    async def _execute(
        self,
        config: APIOrchestrationConfig,
        data: Any,
        secrets: dict[str, str],
        namespace: MutableMapping[str, Any],
        store: str | None,
    ) -> None:
        _IN_RUN.set(True)  # in this task's context only
        orchestrator = APIOrchestrator(config, secrets=secrets)
        error: OrchestrationError | None = None
        try:
            await orchestrator.execute(data, observer=self.panel)
        except OrchestrationError as exc:
            error = exc  # the run stopped (fail fast, total timeout): a result, not a bug
        finally:
            # Also on cancellation: the engine has recorded the cancelled calls; show them,
            # then let CancelledError go on.
            await orchestrator.close()
            if orchestrator.last_run is not None:
                self.guard(self._finished)(orchestrator.last_run, error, namespace, store)
        if self._run_errors:
            raise self._run_errors[0]

    def _finished(
        self,
        run: Run,
        error: OrchestrationError | None,
        namespace: MutableMapping[str, Any],
        store: str | None,
    ) -> None:
        self.run = run
        if store:
            namespace[store] = run
        self.panel.show_results(run)
        if self._cancel_requested or isinstance(run.error, asyncio.CancelledError):
            cancelled = run.outcomes.get("cancelled", 0)
            self.note = f"Cancelled ({cancelled} call(s) cancelled): {run.summary()}"
        elif error is not None:
            self.note = f"Stopped: {error}"
        else:
            self.note = f"{'Done' if run.ok else 'Finished with failures'}: {run.summary()}"
        if store:
            self.note += f" The run is in `{store}`."
        for callback in self.callbacks:
            self.guard(callback)(run)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.running = False
        if task.cancelled() and self.note == CANCELLING:
            self.note = "Cancelled before the run started."
        elif not task.cancelled():
            task.exception()  # kept in last_error already; retrieved so asyncio won't log it
        self._render()


def secret_values(config: APIOrchestrationConfig, given: Mapping[str, str]) -> dict[str, str]:
    """Values for the ``{$secrets.NAME}`` placeholders: `given`, else the environment.

    Raises:
        ConfigError: a secret with no value anywhere (a form can't prompt mid-run).
    """
    names = set().union(*(_secret_refs(_template_fields(ep)) for ep in config.endpoints))
    values = {}
    for name in sorted(names):
        value = given.get(name, os.environ.get(name))
        if value is None:
            raise ConfigError(
                f"secret {name}: set the environment variable {name}, or pass "
                f"secrets={{{name!r}: ...}} to builder()"
            )
        values[name] = value
    return values

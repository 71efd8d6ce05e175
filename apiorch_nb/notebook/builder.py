"""`Builder`: an ipywidgets form that builds, checks, runs and exports an orchestration.

Every change in the form is validated at once by the engine itself (each field through
`APIEndpoint` / `APIOrchestrationConfig`, the graph through their checks and the plan), so
the form can never disagree with what would run. Run starts an `asyncio` task on the
kernel's running loop; the run panel watches it live and shows the result tabs after it.

An exception in any of the builder's own callbacks (a widget handler, a live redraw, an
``on_run_finished`` callback) is never swallowed: it is kept in ``last_error`` and shown in
the status line, and one raised during a run also ends ``builder.task`` with it.

Example::

    b = apiorch_nb.builder()          # or builder("requests.http"), builder(run)
    b                                 # the form; fill it in, press Run
    b.run.calls                       # the last run, also in the notebook as `builder_run`
    print(b.cell_text())              # the same thing as a %%orchestrate cell
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import ipywidgets as w

from ..config import APIOrchestrationConfig
from ..endpoint import APIEndpoint
from ..errors import ConfigError
from ..orchestrator import APIOrchestrator
from ..run import Run
from ._builder_cell import RunSettings, read_cell, write_cell
from ._builder_control import RunControl, secret_values
from ._builder_list import EndpointList
from ._builder_run import RunPanel
from ._builder_settings import SettingsForm
from ._builder_validate import validate

__all__ = ["Builder", "builder"]


class Builder:
    """The form, its validation, its run and its round trips.

    `namespace` is where callables are offered from and the run is stored (default: the
    notebook's ``user_ns``); `secrets` fill ``{$secrets.NAME}`` before the environment does;
    `data` is the run's input when the form names no input variable.
    """

    def __init__(
        self,
        config: APIOrchestrationConfig | None = None,
        *,
        namespace: MutableMapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
        run_name: str = "builder_run",
        data: Any = None,
    ) -> None:
        self.namespace: MutableMapping[str, Any] = (
            namespace if namespace is not None else _notebook_namespace()
        )
        self.secrets = dict(secrets or {})
        self.data = data
        #: What is wrong with the form now (the engine's messages); empty when it can run.
        self.problems: list[str] = []
        self._busy = False
        self._config: APIOrchestrationConfig | None = None
        self._control = RunControl(self._render)
        self._build_widgets(run_name)
        if config is not None:
            self.load_config(config)
        else:
            self._revalidate()

    def _build_widgets(self, run_name: str) -> None:
        guard = self._control.guard
        #: The endpoint forms in run order: ``add()``, ``remove(form)``, ``duplicate(form)``,
        #: ``move(form, offset)``, indexing and iteration.
        self.endpoints = EndpointList(
            lambda: self.namespace, self._revalidate, guard, self._quiet, self._hidden_names
        )
        self.settings = SettingsForm(self._revalidate, guard, run_name)
        self.panel: RunPanel = self._control.panel
        self.add_button = w.Button(description="Add endpoint", icon="plus")
        self.add_button.on_click(guard(lambda _: self.endpoints.add()))
        self.refresh_button = w.Button(
            description="Refresh functions",
            icon="refresh",
            tooltip="Offer the callables now defined in the notebook",
        )
        self.refresh_button.on_click(guard(lambda _: self.endpoints.refresh_callables()))
        self.run_button = w.Button(description="Run", icon="play", button_style="primary")
        self.run_button.on_click(guard(self._on_run))
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True)
        self.cancel_button.on_click(guard(lambda _: self.cancel()))
        self.status = w.HTML()
        self.status.add_class("apiorch-status")
        self.cell_textarea = w.Textarea(layout=w.Layout(width="100%", height="16em"))
        self.cell_textarea.add_class("apiorch-cell-text")
        self.load_button = w.Button(description="Load cell text", icon="upload")
        self.load_button.on_click(guard(self._on_load))
        self.python_textarea = w.Textarea(layout=w.Layout(width="100%", height="16em"))
        self.python_textarea.add_class("apiorch-python")
        self.export = w.Accordion(
            children=[w.VBox([self.cell_textarea, self.load_button]), self.python_textarea],
            titles=("%%orchestrate cell", "Python script"),
            selected_index=None,
        )
        self.widget = w.VBox(
            [
                w.HTML("<b>API orchestration builder</b>"),
                self.endpoints.box,
                w.HBox([self.add_button, self.refresh_button]),
                self.settings.box,
                w.HBox([self.run_button, self.cancel_button]),
                self.status,
                self.panel.box,
                self.export,
            ]
        )
        self.widget.add_class("apiorch-builder")

    # -- construction from elsewhere -------------------------------------------------------

    @classmethod
    def from_cell(cls, text: str, **kwargs: Any) -> Builder:
        """A builder holding a ``%%orchestrate`` cell (or ``.http`` text); see `load_cell`."""
        builder = cls(**kwargs)
        builder.load_cell(text)
        return builder

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> Builder:
        """A builder holding a ``.http`` file (``-f`` paths inside resolve next to it).

        Raises:
            OSError: the file can't be read. CellSyntaxError: see `load_cell`.
        """
        path = Path(path).expanduser()
        builder = cls(**kwargs)
        builder.load_cell(path.read_text(encoding="utf-8"), base=path.parent)
        return builder

    @classmethod
    def from_run(cls, run: Run, **kwargs: Any) -> Builder:
        """A builder holding what `run` ran (its config), with the run's input as `data`.

        Raises:
            ConfigError: the run carries no config.
        """
        if run.config is None:
            raise ConfigError("this run has no config to load (Run.config is None)")
        kwargs.setdefault("data", run.input)
        return cls(run.config, **kwargs)

    def load_cell(self, text: str, *, base: Path | None = None) -> None:
        """Replace the form with a ``%%orchestrate`` cell's settings and requests.

        Templates resolve the way the magic resolves them (notebook names, environment).

        Raises:
            CellSyntaxError: the request text, naming the line.
            ConfigError: a magic line option the magic would refuse.
        """
        settings, endpoints = read_cell(text, self.namespace, base=base)
        self._load(endpoints, settings)

    def load_config(self, config: APIOrchestrationConfig) -> None:
        """Replace the form with `config` (settings the form has no field for are dropped:
        ``error_threshold``, ``result_merger``, ``cache_key_generator``, logging flags).

        Raises:
            ConfigError: an endpoint body the form can't edit (binary, not JSON).
        """
        self._load(config.endpoints, RunSettings.from_config(config))

    def _load(self, endpoints: list[APIEndpoint], settings: RunSettings) -> None:
        with self._quiet():
            self.endpoints.replace(endpoints)
            self.settings.load(settings)

    # -- validation ------------------------------------------------------------------------

    @property
    def config(self) -> APIOrchestrationConfig:
        """The form as an `APIOrchestrationConfig`.

        Raises:
            ConfigError: the form has problems (listed in the message and in `problems`).
        """
        self._revalidate()
        if self._config is None:
            raise ConfigError("the builder's form has problems: " + "; ".join(self.problems))
        return self._config

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        """Change many widgets with one validation at the end."""
        was = self._busy
        self._busy = True
        try:
            yield
        finally:
            self._busy = was
        if not was:
            self._revalidate()

    def _revalidate(self) -> None:
        if self._busy:
            return  # inside a bulk change, or our own option updates echoing back
        self._busy = True
        try:
            self._validate()
        finally:
            self._busy = False
        self._render()

    def _validate(self) -> None:
        self.endpoints.sync()
        forms = list(self.endpoints)
        checked = validate(forms, self.settings, self.namespace)
        self._config, self.problems = checked.config, checked.problems
        for form in forms:
            form.show_errors(checked.endpoint_errors[form.uid])
        self.settings.show_errors(checked.settings_errors)
        self._update_exports()

    def _update_exports(self) -> None:
        if self._config is None:
            self.cell_textarea.value = "# Fix the problems above to see the cell text."
            self.python_textarea.value = "# Fix the problems above to see the script."
            return
        try:
            self.cell_textarea.value = self._cell_text(self._config)
        except ConfigError as exc:
            self.cell_textarea.value = f"# This configuration can't be written as a cell: {exc}"
        self.python_textarea.value = self._python_code(self._config)

    def _render(self) -> None:
        esc = html.escape
        lines = []
        if not self.endpoints:
            lines.append("Add an endpoint to start.")
        elif self.problems:
            items = "".join(f"<li>{esc(p)}</li>" for p in self.problems)
            lines.append(
                f'<span style="color:#d62728">{len(self.problems)} problem(s) to fix before '
                f'running:</span><ul style="margin:0">{items}</ul>'
            )
        else:
            mode = self.settings.mode.value
            lines.append(f"Ready: {len(self.endpoints)} endpoint(s), {esc(mode)} mode.")
        if self.running:
            lines.append("<b>Running…</b> Cancel stops it.")
        if self._control.note:
            lines.append(esc(self._control.note))
        if self.last_error is not None:
            error = f"{type(self.last_error).__name__}: {self.last_error}"
            lines.append(
                '<span class="apiorch-error" style="color:#d62728">Error in the builder: '
                f"{esc(error)} (kept in <code>.last_error</code>)</span>"
            )
        self.status.value = "<br>".join(lines)
        self.run_button.disabled = self.running or bool(self.problems) or not self.endpoints
        self.cancel_button.disabled = not self.running

    # -- running ---------------------------------------------------------------------------

    @property
    def run(self) -> Run | None:
        """The last run (also in the namespace under the "Store run as" name)."""
        return self._control.run

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The task of the current or last run; await it to wait for the run."""
        return self._control.task

    @property
    def last_error(self) -> BaseException | None:
        """The last exception raised in one of the builder's callbacks (also in the status)."""
        return self._control.last_error

    @property
    def running(self) -> bool:
        return self._control.running

    def on_run_finished(self, callback: Callable[[Run], Any]) -> Callable[[Run], Any]:
        """Call `callback(run)` after every run (usable as a decorator); errors surface."""
        self._control.callbacks.append(callback)
        return callback

    def start(self) -> asyncio.Task[None]:
        """Start a run of the form on the running event loop (what the Run button does).

        Raises:
            ConfigError: the form has problems, the input variable or a secret is missing.
            RuntimeError: no running event loop (a Jupyter kernel always has one).
        """
        if self.running and self.task is not None:
            return self.task
        config = self.config
        if not config.endpoints:
            raise ConfigError("add an endpoint first")
        task = self._control.start(
            config,
            self._input_data(strict=True),
            secret_values(config, self.secrets),
            self.namespace,
            self.settings.run_name.value.strip() or None,
        )
        self._render()
        return task

    def cancel(self) -> None:
        """Cancel the running run; its unfinished calls are recorded as cancelled."""
        if self._control.cancel():
            self._render()

    def _on_run(self, _: Any = None) -> None:
        try:
            self.start()
        except ConfigError as exc:
            self._control.note = f"Not started: {exc}"
            self._render()

    def _input_data(self, *, strict: bool) -> Any:
        name = self.settings.input_var.value.strip()
        if not name:
            return self.data
        if name in self.namespace:
            return self.namespace[name]
        if strict:
            raise ConfigError(f"input variable {name!r} is not defined in the notebook")
        return None

    # -- round trips -----------------------------------------------------------------------

    def cell_text(self) -> str:
        """The form as a ``%%orchestrate`` cell: magic line with the settings, then requests.

        Raises:
            ConfigError: the form has problems, or an endpoint ``.http`` can't express.
        """
        return self._cell_text(self.config)

    def _cell_text(self, config: APIOrchestrationConfig) -> str:
        return write_cell(
            config,
            store_as=self.settings.run_name.value.strip() or None,
            input_var=self.settings.input_var.value.strip() or None,
        )

    def python_code(self) -> str:
        """A runnable script that builds this config and executes it (see `Run.to_python`).

        Raises:
            ConfigError: the form has problems.
        """
        return self._python_code(self.config)

    def _python_code(self, config: APIOrchestrationConfig) -> str:
        plan = APIOrchestrator(config).plan()
        plan.input = self._input_data(strict=False)
        return plan.to_python()

    def _on_load(self, _: Any) -> None:
        try:
            self.load_cell(self.cell_textarea.value)
            self._control.note = "Loaded the cell text."
        except (ConfigError, OSError) as exc:
            self._control.note = f"Cannot load the cell text: {exc}"
        self._render()

    def _hidden_names(self) -> Mapping[str, Any]:
        """IPython's own names in the notebook namespace, hidden as ``%who`` hides them."""
        shell = _shell()
        if shell is not None and self.namespace is shell.user_ns:
            return shell.user_ns_hidden  # type: ignore[no-any-return]
        return {}

    # -- display ---------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        state = (
            "running"
            if self.running
            else f"{len(self.problems)} problem(s)"
            if self.problems
            else "ready"
        )
        return f"<Builder: {len(self.endpoints)} endpoint(s), {state}>"


def builder(source: Any = None, **kwargs: Any) -> Builder:
    """A `Builder` from nothing, a ``.http`` file path, cell text, a `Run` or a config.

    Keyword arguments go to `Builder` (``namespace``, ``secrets``, ``run_name``, ``data``).

    Raises:
        TypeError: a `source` of another kind. See the ``from_*`` constructors for the rest.
    """
    if source is None:
        return Builder(**kwargs)
    if isinstance(source, Run):
        return Builder.from_run(source, **kwargs)
    if isinstance(source, APIOrchestrationConfig):
        return Builder(source, **kwargs)
    if isinstance(source, Path) or (
        isinstance(source, str)
        and "\n" not in source
        and source.strip().endswith((".http", ".rest"))
    ):
        return Builder.from_file(source, **kwargs)
    if isinstance(source, str):
        return Builder.from_cell(source, **kwargs)
    raise TypeError(f"builder() takes a .http path, cell text, a Run or a config, got {source!r}")


def _shell() -> Any:
    from IPython import get_ipython

    return get_ipython()


def _notebook_namespace() -> MutableMapping[str, Any]:
    shell = _shell()
    return shell.user_ns if shell is not None else {}

"""The builder's run panel: live progress while a run goes on, the result tabs after it.

The panel is the run's `RunObserver`. It updates a progress bar on every finished call,
the live table at most ~10 times a second and the waterfall at most ~4 times a second
(redrawing a Plotly figure is the expensive part), with a trailing redraw so the last
state is always shown. Figures go into `Output` widgets as static Plotly JSON bundles, set
on the widget's ``outputs`` directly: that works from a background task (no capture
context needed) and without a kernel, and no figure widget state is created.
"""

from __future__ import annotations

import asyncio
import html
import json
import math
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from .._call import CallState
from .display import figure_bundle
from .progress import charts_ready

if TYPE_CHECKING:
    from .._call import CallRecord
    from ..run import Run

Guard = Callable[[Callable[..., Any]], Callable[..., Any]]

TAB_TITLES = ("Table", "Timeline", "Latency", "Graph", "JSON")
TABLE_INTERVAL_S = 0.1
WATERFALL_INTERVAL_S = 0.25
_LIVE_ROWS = 200  # endpoints listed in the live table; the rest are counted


class Throttle:
    """Calls `draw` at most once per `interval` seconds, always ending with a trailing call.

    A request inside the interval schedules one draw at the interval's end (a loop timer,
    no polling); `flush` draws now and drops the pending one.
    """

    def __init__(self, interval: float, draw: Callable[[], None]) -> None:
        self.interval = interval
        self.draw = draw
        self.draws = 0
        self._last = -math.inf
        self._pending: asyncio.TimerHandle | None = None

    def request(self) -> None:
        if self._pending is not None:
            return  # a trailing draw is due; it will show this state too
        loop = asyncio.get_running_loop()
        wait = self._last + self.interval - loop.time()
        if wait <= 0:
            self._fire()
        else:
            self._pending = loop.call_later(wait, self._fire)

    def flush(self) -> None:
        self.cancel()
        self._fire()

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _fire(self) -> None:
        self._pending = None
        try:
            self._last = asyncio.get_running_loop().time()
        except RuntimeError:  # flushed outside the loop (a run shown after the fact)
            self._last = -math.inf
        self.draws += 1
        self.draw()


class RunPanel:
    """Progress bar, live table and waterfall during a run; the result tabs after it.

    Every observer method runs through `guard`, so an error while drawing is reported by
    the builder (``last_error``) and never reaches the engine, which would detach us.
    """

    def __init__(self, guard: Guard) -> None:
        self.progress = w.IntProgress(value=0, min=0, max=1, description="", bar_style="info")
        self.progress.add_class("apiorch-progress")
        self.table = w.HTML()
        self.table.add_class("apiorch-live-table")
        self.waterfall = w.Output()
        self.waterfall.add_class("apiorch-live-waterfall")
        self.results: w.Tab | None = None
        self._results_box = w.VBox()
        self.box = w.VBox(
            [self.progress, self.table, self.waterfall, self._results_box],
            layout=w.Layout(display="none"),
        )
        self._run: Run | None = None
        self._table = Throttle(TABLE_INTERVAL_S, guard(self._draw_table))
        self._waterfall = Throttle(WATERFALL_INTERVAL_S, guard(self._draw_waterfall))
        self.run_started = guard(self._run_started)
        self.call_finished = guard(self._call_finished)
        self.run_finished = guard(self._run_finished)

    @property
    def waterfall_draws(self) -> int:
        """How many times the live waterfall was drawn (the throttle's count)."""
        return self._waterfall.draws

    # -- RunObserver -----------------------------------------------------------------------

    def _run_started(self, run: Run) -> None:
        self._run = run
        self.box.layout.display = None
        self._results_box.children = ()
        self.results = None
        for widget in (self.table, self.waterfall):
            widget.layout.display = None
        self.progress.max = max(1, len(run.records))
        self.progress.value = 0
        self.progress.bar_style = "info"
        self.progress.description = f"0/{len(run.records)}"
        self._table.flush()
        self._waterfall.flush()

    def _call_finished(self, run: Run, record: CallRecord) -> None:
        done = sum(1 for r in run.records.values() if r.state.terminal)
        self.progress.value = done
        self.progress.description = f"{done}/{len(run.records)}"
        self._table.request()
        self._waterfall.request()

    def _run_finished(self, run: Run) -> None:
        self._run = run
        self._table.cancel()
        self._waterfall.cancel()  # the result tabs replace the live waterfall
        done = sum(1 for r in run.records.values() if r.state.terminal)
        self.progress.value = done
        self.progress.description = f"{done}/{len(run.records)}"
        if isinstance(run.error, asyncio.CancelledError):
            self.progress.bar_style = "warning"
        else:
            self.progress.bar_style = "success" if run.ok else "danger"
        self._draw_table()

    # -- drawing ---------------------------------------------------------------------------

    def _draw_table(self) -> None:
        if self._run is not None:
            self.table.value = live_table(self._run)

    def _draw_waterfall(self) -> None:
        if self._run is not None and charts_ready():  # never import plotly mid-run
            self.waterfall.outputs = (_output(figure_bundle(self._run.timeline())),)

    def show_results(self, run: Run) -> w.Tab:
        """Replace the live table and waterfall by the tabs: Table, Timeline, Latency, Graph,
        JSON (Table selected)."""
        self._run = run
        self.box.layout.display = None
        table = w.HTML(run._repr_mimebundle_(include=["text/html"])["text/html"] + _calls(run))
        timeline = w.Output()
        timeline.outputs = (_output(figure_bundle(run.timeline())),)
        latency = w.Output()
        if any(a.latency_s is not None for r in run.records.values() for a in r.attempts):
            latency.outputs = (_output(figure_bundle(run.latency_chart())),)
        else:
            latency.outputs = (_output({"text/plain": "No latencies: nothing was sent."}),)
        graph = w.Output()
        graph.outputs = (_output(run.dag()._repr_mimebundle_()),)
        results = w.Output()
        results.outputs = (_output(_json_bundle(run.results)),)
        tabs = w.Tab(children=[table, timeline, latency, graph, results], titles=TAB_TITLES)
        tabs.selected_index = 0
        tabs.add_class("apiorch-results")
        for widget in (self.table, self.waterfall):
            widget.layout.display = "none"
        self.waterfall.outputs = ()
        self.results = tabs
        self._results_box.children = (tabs,)
        return tabs


def live_table(run: Run) -> str:
    """Counts by state, then one row per endpoint: state, last status, tries, time."""
    esc = html.escape
    counts = Counter(r.state.value for r in run.records.values())
    done = sum(n for state, n in counts.items() if CallState(state).terminal)
    summary = " · ".join(f"{esc(state)} {n}" for state, n in sorted(counts.items()))
    rows = []
    now = run.ended_at
    for record in list(run.records.values())[:_LIVE_ROWS]:
        last = record.attempts[-1] if record.attempts else None
        status = "" if last is None or last.status is None else str(last.status)
        end = record.ended_at if record.ended_at is not None else now
        ms = f"{max(0.0, end - record.started_at) * 1000:.0f}"
        rows.append(
            f"<tr><td><code>{esc(record.endpoint)}</code></td>"
            f"<td>{esc(record.state.value)}</td><td>{esc(status)}</td>"
            f"<td>{len(record.attempts)}</td><td>{ms}</td>"
            f"<td>{esc(run._hide(record.reason or ''))}</td></tr>"
        )
    more = len(run.records) - _LIVE_ROWS
    tail = f"<p>… and {more} more endpoint(s)</p>" if more > 0 else ""
    return (
        f'<div class="apiorch-live"><p>{done}/{len(run.records)} done: {summary}</p>'
        "<table><thead><tr><th>endpoint</th><th>state</th><th>status</th><th>tries</th>"
        f"<th>ms</th><th>reason</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"{tail}</div>"
    )


def _calls(run: Run) -> str:
    """The per-attempt DataFrame as HTML (pandas truncates long frames itself)."""
    if not run.records:
        return ""
    frame = run.calls
    return f"<details><summary>Every attempt (run.calls)</summary>{frame._repr_html_()}</details>"


def _json_bundle(results: Any) -> dict[str, Any]:
    from .._redact import redact_data

    safe = json.loads(json.dumps(redact_data(results), default=repr))
    return {
        "application/json": safe,
        "text/plain": json.dumps(safe, indent=2, ensure_ascii=False),
    }


def _output(bundle: dict[str, Any]) -> dict[str, Any]:
    return {"output_type": "display_data", "data": bundle, "metadata": {}}

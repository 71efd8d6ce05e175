"""How a run or a map appears in a notebook, and how a failed one is told in one line.

A run is shown as separate outputs, in reading order: the summary with the per-endpoint
table and the collapsible responses, the waterfall, the latency chart and the dependency
graph. Figures go out as static Plotly JSON (``application/vnd.plotly.v1+json``), never
as widget state or embedded plotly.js, so saved notebooks stay small and work offline.
A map (`MapRun`) is its summary line and the first rows of its frame, as HTML and text.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._call import CallState
from .._frames import _clip
from .._rows import plain
from ..config import APIOrchestrationConfig
from ..run import Run

if TYPE_CHECKING:
    from ..enrich import MapRun

#: Rows of a map's frame its display shows; the whole frame is ``.frame()``.
MAP_HEAD_ROWS = 10
_ERROR_CHARS = 160  # of the first failed row's error, in a one-line message

_FAILED = (CallState.FAILED, CallState.CIRCUIT_OPEN)


def show_run(run: Run) -> None:
    """Display every view of `run`; registered as the notebook display of `Run` objects.

    It emits raw bundles only (never ``display(run)``), so it cannot recurse into itself.
    """
    from IPython.display import display

    display(run._repr_mimebundle_(), raw=True)
    if not run.records:
        return
    show_figure(run.timeline())
    if any(a.latency_s is not None for r in run.records.values() for a in r.attempts):
        show_figure(run.latency_chart())
    display(run.dag()._repr_mimebundle_(), raw=True)


def show_figure(figure: Any) -> None:
    """A Plotly figure as static JSON plus a text fallback; no plotly.js is embedded."""
    from IPython.display import display

    display(figure_bundle(figure), raw=True)


def figure_bundle(figure: Any) -> dict[str, Any]:
    """The mimebundle of a Plotly figure as static JSON (what `show_figure` displays)."""
    return {
        "application/vnd.plotly.v1+json": {
            "data": [trace.to_plotly_json() for trace in figure.data],
            "layout": figure.layout.to_plotly_json(),
            "config": {"displaylogo": False, "responsive": True},
        },
        "text/plain": f"<Plotly figure: {figure.layout.title.text or 'figure'}>",
    }


def show_plan(config: APIOrchestrationConfig, secret_names: Iterable[str]) -> Run:
    """``--dry-run``: show the endpoints and the graph that would run; nothing is sent."""
    from IPython.display import display

    from ..orchestrator import APIOrchestrator

    plan = APIOrchestrator(config).plan()
    display(plan._repr_mimebundle_(), raw=True)
    display(plan.dag()._repr_mimebundle_(), raw=True)
    names = sorted(secret_names)
    if names:
        display({"text/plain": f"secrets it would read: {', '.join(names)}"}, raw=True)
    return plan


def failure_message(run: Run, *, interrupted: bool, store: str | None) -> str:
    """One readable line (or a few) naming the endpoints that failed and why."""
    where = (
        f"the run is stored in `{store}`"
        if store
        else "add `NAME <<` to the magic line to keep the run"
    )
    if interrupted:
        done = [r.endpoint for r in run.records.values() if r.state is not CallState.CANCELLED]
        cancelled = [r.endpoint for r in run.records.values() if r.state is CallState.CANCELLED]
        return (
            f"interrupted: {len(done)} call(s) finished, {len(cancelled)} cancelled "
            f"({', '.join(cancelled) or 'none'}); {where}"
        )
    problems = []
    for record in run.records.values():
        if record.state in _FAILED and not record.rescued:
            attempts = f" after {len(record.attempts)} attempts" if len(record.attempts) > 1 else ""
            problems.append(f"{record.endpoint}: {record.reason}{attempts}")
    head = f"{len(problems)} of {len(run.records)} endpoint(s) failed"
    if run.error is not None and not problems:
        head = str(run.error)
    elif run.error is not None:
        head += f" ({type(run.error).__name__})"
    detail = "; ".join(problems)
    tail = f"{where}; --allow-failures shows failures without failing the cell"
    return f"{head}: {detail}. {tail}" if detail else f"{head}. {tail}"


# -- maps -----------------------------------------------------------------------------------


def show_map_run(mrun: MapRun) -> None:
    """Display `mrun`'s summary and first rows; registered as the display of `MapRun`."""
    from IPython.display import display

    display(map_run_bundle(mrun), raw=True)


def map_run_bundle(mrun: MapRun) -> dict[str, str]:
    """The summary line and the frame's first `MAP_HEAD_ROWS` rows, as HTML and text."""
    head = mrun.shown_frame(MAP_HEAD_ROWS)
    more = len(mrun) - len(head)
    tail = f"... {more} more rows" if more else ""
    summary = mrun.summary()
    page = (
        f'<div class="apiorch-map"><p>{html.escape(summary)}</p>{head.to_html()}'
        + (f"<p>{tail}</p>" if tail else "")
        + "</div>"
    )
    return {"text/html": page, "text/plain": "\n".join(filter(None, [summary, str(head), tail]))}


def map_stopped_message(mrun: MapRun, *, why: str | None, store: str | None) -> str:
    """One line for a map stopped early: interrupted (`why` None) or timed out (`why`)."""
    counts = mrun.counts()
    finished = len(mrun) - counts["cancelled"] - counts["pending"]
    head = why or f"interrupted after {finished} of {len(mrun)} rows"
    where = (
        f"stored the partial result in `{store}`"
        if store
        else "add `NAME <<` to the magic line to keep the partial result"
    )
    return f"{head}; {where}"


def map_failure_message(mrun: MapRun, *, store: str | None, allowed: bool = False) -> str:
    """One line for a map with failed rows, naming the first failure.

    `allowed` (``--allow-failures``): the short note shown beside the result instead.
    """
    failed = mrun.counts()["failed"]
    head = f"{failed} of {len(mrun)} rows failed"
    if allowed:
        return f"{head} (see {store}.status)" if store else head
    first = next((i for i in range(len(mrun)) if mrun.status(i) == "failed"), None)
    outcome = mrun.outcome(first) if first is not None else None
    if first is not None and outcome is not None:
        error = _clip(str(outcome.error), _ERROR_CHARS)
        head += f" (first: row {plain(mrun.index[first])!r}: {error})"
    where = (
        f"the result is stored in `{store}`, see {store}.status and {store}.error"
        if store
        else "add `NAME <<` to the magic line to keep the result"
    )
    return f"{head}; {where}; --allow-failures shows failures without failing the cell"

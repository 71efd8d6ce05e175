"""Live progress for runs in a notebook: a bar, counts by state, rate and ETA, a waterfall.

It is a `RunObserver` drawing into two display handles, redrawn at most a few times a
second (and the waterfall only for runs small enough to draw quickly). Both start empty and
are emptied again when the run ends, so the saved notebook keeps only the static result and
nbval (which compares first outputs, not updates) sees the same outputs on every run. It
draws only where a frontend can show it (a kernel); in terminal IPython it stays silent.
"""

from __future__ import annotations

import asyncio
import html
import sys
import time
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from .._call import CallRecord
from ..run import Run

if TYPE_CHECKING:
    from ..enrich import MapRun

#: Seconds between redraws of the bar and counts, and of the live waterfall.
BAR_INTERVAL_S = 0.25
WATERFALL_INTERVAL_S = 1.0
#: Larger runs show the bar and counts only: redrawing thousands of bars would slow the run.
WATERFALL_MAX_CALLS = 300

EMPTY = {"text/plain": ""}
#: Chip colours by call state; a map's row statuses are a subset of these.
STATE_COLOURS = {
    "ok": "#2e7d32",
    "failed": "#c62828",
    "circuit_open": "#6a1b9a",
    "cached": "#1565c0",
    "skipped": "#757575",
    "cancelled": "#424242",
}


def charts_ready() -> bool:
    """True if plotly is already imported; live views never import it themselves.

    Importing plotly costs a few hundred milliseconds of the event loop, even from another
    thread (its huge generated modules are unmarshalled holding the GIL), which would stall
    the calls in flight and distort their timings. The first run's final display imports
    it, so live waterfalls appear from the second run on; the first shows bar and counts.
    """
    return "plotly.graph_objects" in sys.modules


_R = TypeVar("_R", Run, "MapRun")


class LiveView(Generic[_R]):
    """Display handles redrawn as a run or map progresses, each part at most once per interval.

    A burst of progress between redraws is caught by one timer, so the last state shows
    within `BAR_INTERVAL_S`. Subclasses draw in `_draw` (stamping `_drawn_at` for what
    they drew) and call `_progressed` on progress and `_clear` at the end.
    """

    #: Seconds between redraws, by part.
    INTERVALS: ClassVar[dict[str, float]] = {"bar": BAR_INTERVAL_S}

    def __init__(self) -> None:
        self._drawn_at = dict.fromkeys(self.INTERVALS, 0.0)
        self._pending: asyncio.TimerHandle | None = None

    def _progressed(self, run: _R) -> None:
        now = time.monotonic()
        due = [k for k, every in self.INTERVALS.items() if now - self._drawn_at[k] >= every]
        if due:
            self._draw(run, due, now)
        elif self._pending is None:  # redraw once the interval has passed, at the latest
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(BAR_INTERVAL_S, self._deferred, run)

    def _clear(self, *handles: Any) -> None:
        """Cancel the pending redraw and empty `handles` (those shown, others are None)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        for handle in handles:
            if handle is not None:
                handle.update(EMPTY, raw=True)

    def _deferred(self, run: _R) -> None:
        self._pending = None
        if not run.finished:
            self._draw(run, list(self.INTERVALS), time.monotonic())

    def _draw(self, run: _R, parts: list[str], now: float) -> None:
        raise NotImplementedError


def shown_empty() -> Any:
    """A new display handle showing nothing, to be filled by updates.

    nbval compares a cell's first outputs, not its updates, and the saved notebook ends
    with the emptied state, so both see the same empty output on every run.
    """
    from IPython.display import display

    return display(EMPTY, raw=True, display_id=True)


class NotebookProgress(LiveView[Run]):
    """Shows a run's progress in the output area while it runs; clears it at the end."""

    INTERVALS: ClassVar[dict[str, float]] = {
        "bar": BAR_INTERVAL_S,
        "waterfall": WATERFALL_INTERVAL_S,
    }

    def __init__(self) -> None:
        super().__init__()
        self._bar: Any = None
        self._waterfall: Any = None

    def run_started(self, run: Run) -> None:
        self._bar = shown_empty()
        self._bar.update(_bar_bundle(run), raw=True)
        if len(run.records) <= WATERFALL_MAX_CALLS:
            self._waterfall = shown_empty()

    def call_finished(self, run: Run, record: CallRecord) -> None:
        self._progressed(run)

    def run_finished(self, run: Run) -> None:
        self._clear(self._bar, self._waterfall)

    def _draw(self, run: Run, parts: list[str], now: float) -> None:
        if "bar" in parts and self._bar is not None:
            self._bar.update(_bar_bundle(run), raw=True)
            self._drawn_at["bar"] = now
        if "waterfall" in parts and self._waterfall is not None and charts_ready():
            from .display import figure_bundle

            self._waterfall.update(figure_bundle(run.timeline()), raw=True)
            self._drawn_at["waterfall"] = now


def _bar_bundle(run: Run) -> dict[str, str]:
    """The bar, counts by state, elapsed time, rate and ETA, as HTML and text."""
    total = len(run.records)
    states = Counter(r.state.value for r in run.records.values())
    done = sum(n for state, n in states.items() if state in STATE_COLOURS)
    elapsed = max(run.ended_at - run.started_at, 0.0)
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else None
    timing = f"{elapsed:.1f} s, {rate:.1f} calls/s" + (f", ETA {eta:.1f} s" if eta else "")
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    text = f"{done}/{total} calls done ({counts}); {timing}"
    page = bar_html(done, total, "calls", sorted(states.items()), timing)
    return {"text/html": page, "text/plain": text}


def bar_html(
    done: int, total: int, unit: str, counts: Iterable[tuple[str, int]], timing: str
) -> str:
    """The progress bar's HTML: the bar, ``done/total unit``, a coloured chip per count
    (``(state, n)``), and the timing."""
    chips = " ".join(
        f'<span style="color:{STATE_COLOURS.get(state, "#9e9e9e")}">{n} {html.escape(state)}</span>'
        for state, n in counts
    )
    return (
        f'<div class="apiorch-progress"><progress value="{done}" max="{total}" '
        f'style="width:40%"></progress> {done}/{total} {unit}'
        + (f" &middot; {chips}" if chips else "")
        + f" &middot; {html.escape(timing)}</div>"
    )


def in_kernel() -> bool:
    """True in a Jupyter kernel, where a frontend shows live display updates."""
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress_observer() -> NotebookProgress | None:
    """`APIOrchestrator.default_observer` in a notebook: progress only where it can show."""
    return NotebookProgress() if in_kernel() else None

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
from typing import Any

from .._call import CallRecord
from ..run import Run

#: Seconds between redraws of the bar and counts, and of the live waterfall.
BAR_INTERVAL_S = 0.25
WATERFALL_INTERVAL_S = 1.0
#: Larger runs show the bar and counts only: redrawing thousands of bars would slow the run.
WATERFALL_MAX_CALLS = 300

_EMPTY = {"text/plain": ""}
_STATE_COLOURS = {
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


class NotebookProgress:
    """Shows a run's progress in the output area while it runs; clears it at the end."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._waterfall: Any = None
        self._drawn_at = {"bar": 0.0, "waterfall": 0.0}
        self._pending: asyncio.TimerHandle | None = None

    def run_started(self, run: Run) -> None:
        from IPython.display import display

        # Displayed empty and filled by an update: nbval compares a cell's first outputs,
        # not its updates, and the saved notebook ends with the emptied state, so both
        # see the same empty output on every run.
        self._bar = display(_EMPTY, raw=True, display_id=True)
        self._bar.update(_bar_bundle(run), raw=True)
        if len(run.records) <= WATERFALL_MAX_CALLS:
            self._waterfall = display(_EMPTY, raw=True, display_id=True)

    def call_finished(self, run: Run, record: CallRecord) -> None:
        now = time.monotonic()
        due = [
            k
            for k, every in (("bar", BAR_INTERVAL_S), ("waterfall", WATERFALL_INTERVAL_S))
            if now - self._drawn_at[k] >= every
        ]
        if due:
            self._draw(run, due, now)
        elif self._pending is None:  # redraw once the interval has passed, at the latest
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(BAR_INTERVAL_S, self._deferred, run)

    def run_finished(self, run: Run) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        for handle in (self._bar, self._waterfall):
            if handle is not None:
                handle.update(_EMPTY, raw=True)

    def _deferred(self, run: Run) -> None:
        self._pending = None
        if not run.finished:
            self._draw(run, ["bar", "waterfall"], time.monotonic())

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
    done = sum(n for state, n in states.items() if state in _STATE_COLOURS)
    elapsed = max(run.ended_at - run.started_at, 0.0)
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else None
    timing = f"{elapsed:.1f} s, {rate:.1f} calls/s" + (f", ETA {eta:.1f} s" if eta else "")
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    text = f"{done}/{total} calls done ({counts}); {timing}"
    chips = " ".join(
        f'<span style="color:{_STATE_COLOURS.get(state, "#9e9e9e")}">'
        f"{n} {html.escape(state)}</span>"
        for state, n in sorted(states.items())
    )
    page = (
        f'<div class="apiorch-progress"><progress value="{done}" max="{total}" '
        f'style="width:40%"></progress> {done}/{total} calls &middot; {chips} &middot; '
        f"{html.escape(timing)}</div>"
    )
    return {"text/html": page, "text/plain": text}


def in_kernel() -> bool:
    """True in a Jupyter kernel, where a frontend shows live display updates."""
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress_observer() -> NotebookProgress | None:
    """`APIOrchestrator.default_observer` in a notebook: progress only where it can show."""
    return NotebookProgress() if in_kernel() else None

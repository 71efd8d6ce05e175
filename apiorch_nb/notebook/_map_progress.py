"""Live progress for maps in a notebook: a bar, rows by status, rows/s and an ETA.

A `MapObserver` drawing into one display handle. A map may finish thousands of rows a
second and every redraw is a message to the frontend, so it redraws at most every
`BAR_INTERVAL_S`, with a timer catching the last rows of a burst. Like the run progress it
is displayed empty, filled by updates and emptied when the map ends: the saved notebook
keeps only the result, and nbval (which compares first outputs) sees the same every run.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from .progress import LiveView, bar_html, in_kernel, shown_empty

if TYPE_CHECKING:
    from ..enrich import MapRun

#: Row statuses with a chip, in the order they are listed.
_STATUSES = ("ok", "cached", "failed", "cancelled")


class MapProgress(LiveView["MapRun"]):
    """Shows a map's progress in the output area while it runs; clears it at the end."""

    def __init__(self) -> None:
        super().__init__()
        self._bar: Any = None

    def map_started(self, run: MapRun) -> None:
        self._bar = shown_empty()
        self._draw(run, ["bar"], time.monotonic())

    def row_finished(self, run: MapRun, position: int) -> None:
        self._progressed(run)

    def map_finished(self, run: MapRun) -> None:
        self._clear(self._bar)

    def _draw(self, run: MapRun, parts: list[str], now: float) -> None:
        if self._bar is not None:
            self._bar.update(bar_bundle(run), raw=True)
            self._drawn_at["bar"] = now


def bar_bundle(run: MapRun) -> dict[str, str]:
    """The bar, rows by status, elapsed time, rows/s and ETA, as HTML and text."""
    counts = run.counts()
    total, done = len(run), run.done
    rate, eta = run.rate(), run.eta_s()
    timing = f"{run.duration_s:.1f} s, {rate:.1f} rows/s"
    if done < total and math.isfinite(eta):
        timing += f", ETA {eta:.1f} s"
    shown = [(status, counts[status]) for status in _STATUSES if counts[status]]
    text = f"{done}/{total} rows done"
    if shown:
        text += " (" + ", ".join(f"{n} {status}" for status, n in shown) + ")"
    page = bar_html(done, total, "rows", shown, timing)
    return {"text/html": page, "text/plain": f"{text}; {timing}"}


def map_progress_observer() -> MapProgress | None:
    """`APIOrchestrator.default_map_observer` in a notebook: only where it can show."""
    return MapProgress() if in_kernel() else None

"""Live progress for maps in a notebook: a bar, rows by status, rows/s and an ETA.

A `MapObserver` drawing into one display handle. A map may finish thousands of rows a
second and every redraw is a message to the frontend, so it redraws at most every
`BAR_INTERVAL_S`, with a timer catching the last rows of a burst. Like the run progress it
is displayed empty, filled by updates and emptied when the map ends: the saved notebook
keeps only the result, and nbval (which compares first outputs) sees the same every run.
"""

from __future__ import annotations

import asyncio
import html
import math
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from .progress import BAR_INTERVAL_S, in_kernel

if TYPE_CHECKING:
    from ..enrich import MapRun

_EMPTY = {"text/plain": ""}
_STATUS_COLOURS = {
    "ok": "#2e7d32",
    "cached": "#1565c0",
    "failed": "#c62828",
    "cancelled": "#424242",
}


class MapProgress:
    """Shows a map's progress in the output area while it runs; clears it at the end."""

    def __init__(self) -> None:
        self._bar: Any = None
        # Counted as rows finish: `MapRun.counts()` walks every row, too slow per redraw.
        self._counts: Counter[str] = Counter()
        self._drawn_at = 0.0
        self._pending: asyncio.TimerHandle | None = None

    def map_started(self, run: MapRun) -> None:
        from IPython.display import display

        self._bar = display(_EMPTY, raw=True, display_id=True)
        self._draw(run, time.monotonic())

    def row_finished(self, run: MapRun, position: int) -> None:
        outcome = run.outcomes[position]
        if outcome is not None:
            self._counts[outcome.status] += 1
        now = time.monotonic()
        if now - self._drawn_at >= BAR_INTERVAL_S:
            self._draw(run, now)
        elif self._pending is None:  # redraw once the interval has passed, at the latest
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(BAR_INTERVAL_S, self._deferred, run)

    def map_finished(self, run: MapRun) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._bar is not None:
            self._bar.update(_EMPTY, raw=True)

    def _deferred(self, run: MapRun) -> None:
        self._pending = None
        if not run.finished:
            self._draw(run, time.monotonic())

    def _draw(self, run: MapRun, now: float) -> None:
        if self._bar is not None:
            self._bar.update(bar_bundle(run, self._counts), raw=True)
            self._drawn_at = now


def bar_bundle(run: MapRun, counts: Counter[str]) -> dict[str, str]:
    """The bar, rows by status, elapsed time, rows/s and ETA, as HTML and text."""
    total, done = len(run), run.done
    rate, eta = run.rate(), run.eta_s()
    timing = f"{run.duration_s:.1f} s, {rate:.1f} rows/s"
    if done < total and math.isfinite(eta):
        timing += f", ETA {eta:.1f} s"
    shown = [(status, counts[status]) for status in _STATUS_COLOURS if counts[status]]
    text = f"{done}/{total} rows done"
    if shown:
        text += " (" + ", ".join(f"{n} {status}" for status, n in shown) + ")"
    chips = " ".join(
        f'<span style="color:{_STATUS_COLOURS[status]}">{n} {status}</span>' for status, n in shown
    )
    page = (
        f'<div class="apiorch-progress"><progress value="{done}" max="{total}" '
        f'style="width:40%"></progress> {done}/{total} rows'
        + (f" &middot; {chips}" if chips else "")
        + f" &middot; {html.escape(timing)}</div>"
    )
    return {"text/html": page, "text/plain": f"{text}; {timing}"}


def map_progress_observer() -> MapProgress | None:
    """`APIOrchestrator.default_map_observer` in a notebook: only where it can show."""
    return MapProgress() if in_kernel() else None

"""Watching a run while it happens: the hook behind live progress displays.

A `RunObserver` receives the run's `Run` object itself: live while the run goes on (its
records fill in, ``finished`` is False, ``ended_at`` is the time of the latest event) and
final afterwards. Observers run on the event loop between calls, so they must be quick; a
display that redraws should throttle itself. An observer that raises is logged and
detached for the rest of the run; it never breaks the run.

Example::

    class Printer:
        def run_started(self, run): print(len(run.records), "calls")
        def call_finished(self, run, record): print(record.endpoint, record.state.value)
        def run_finished(self, run): print(run.summary())

    await orchestrator.execute(data, observer=Printer())
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._call import CallRecord
    from .enrich import MapRun
    from .run import Run

logger = logging.getLogger("apiorch_nb")

__all__ = ["MapObserver", "RunObserver"]


@runtime_checkable
class RunObserver(Protocol):
    """What `APIOrchestrator.execute(..., observer=...)` calls as a run progresses."""

    def run_started(self, run: Run) -> None:
        """Every call is pending; nothing has been sent yet."""

    def call_finished(self, run: Run, record: CallRecord) -> None:
        """`record` reached its outcome (ok, failed, skipped, cached, ... or cancelled)."""

    def run_finished(self, run: Run) -> None:
        """The run is over (also when it failed, timed out or was interrupted)."""


@runtime_checkable
class MapObserver(Protocol):
    """What `APIOrchestrator.map(..., observer=...)` calls as rows finish."""

    def map_started(self, run: MapRun) -> None:
        """No row has run yet."""

    def row_finished(self, run: MapRun, position: int) -> None:
        """Row `position` (0-based, input order) has its outcome in ``run.outcomes``."""

    def map_finished(self, run: MapRun) -> None:
        """The map is over (also when it was interrupted, timed out or raised)."""


class Watch:
    """Calls one observer for one run (internal); an observer that raises is logged and
    detached, so a broken display can never break the run."""

    __slots__ = ("observer", "run")

    def __init__(self, observer: RunObserver | MapObserver, run: Run | MapRun) -> None:
        self.observer: RunObserver | MapObserver | None = observer
        self.run = run

    @classmethod
    def start(cls, observer: RunObserver | None, run: Run) -> Watch | None:
        if observer is None:
            return None
        watch = cls(observer, run)
        watch._call("run_started", run)
        return watch

    def notify(self, method: str, *args: Any) -> None:
        """Call `method` of the observer (a `MapObserver` for maps) with `args`."""
        self._call(method, *args)

    def call_finished(self, record: CallRecord) -> None:
        self.run.ended_at = time.monotonic()
        self._call("call_finished", self.run, record)

    def run_finished(self) -> None:
        self._call("run_finished", self.run)

    def _call(self, method: str, *args: Any) -> None:
        if self.observer is None:
            return
        try:
            getattr(self.observer, method)(*args)
        except Exception:
            logger.exception("run observer %r failed in %s; detached", self.observer, method)
            self.observer = None

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
    from .run import Run

logger = logging.getLogger("apiorch_nb")

__all__ = ["RunObserver"]


@runtime_checkable
class RunObserver(Protocol):
    """What `APIOrchestrator.execute(..., observer=...)` calls as a run progresses."""

    def run_started(self, run: Run) -> None:
        """Every call is pending; nothing has been sent yet."""

    def call_finished(self, run: Run, record: CallRecord) -> None:
        """`record` reached its outcome (ok, failed, skipped, cached, ... or cancelled)."""

    def run_finished(self, run: Run) -> None:
        """The run is over (also when it failed, timed out or was interrupted)."""


class Watch:
    """Calls one observer for one run (internal); an observer that raises is logged and
    detached, so a broken display can never break the run."""

    __slots__ = ("observer", "run")

    def __init__(self, observer: RunObserver, run: Run) -> None:
        self.observer: RunObserver | None = observer
        self.run = run

    @classmethod
    def start(cls, observer: RunObserver | None, run: Run) -> Watch | None:
        if observer is None:
            return None
        watch = cls(observer, run)
        watch._call("run_started", run)
        return watch

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

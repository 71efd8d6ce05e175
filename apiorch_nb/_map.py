"""Runs an orchestrator's endpoint graph once per row, in this process, on this loop.

A fixed pool of worker tasks pulls rows in input order, so a 100,000-row frame never
makes 100,000 tasks at once. Every row gets its own `Scheduler` (its own run: input,
results, total_timeout, fail_fast), and all of them take their slots from one semaphore,
so ``max_concurrent`` caps the calls of the whole map, and all share the orchestrator's
limiter, breakers, cache and metrics. A row's outcome is filed the moment it ends; when
the map is cancelled or times out, each running row records its calls as cancelled
before the map returns control, and rows never started stay ``pending``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from ._call import CACHED, CIRCUIT_OPEN, FAILED, OK, SKIPPED, CallRecord
from ._scheduler import RunLimits, Scheduler
from .enrich import MapRun
from .errors import ConfigError, MapTimeout
from .progress import Watch

if TYPE_CHECKING:
    import pandas as pd

    from .orchestrator import APIOrchestrator

_FAILED = (FAILED, CIRCUIT_OPEN)


async def run_rows(
    orchestrator: APIOrchestrator,
    mrun: MapRun,
    *,
    max_concurrent: int,
    on_row: Callable[[int], None] | None = None,
) -> None:
    """Run every row of `mrun` and file its outcome as it ends.

    Raises:
        asyncio.CancelledError: the map was cancelled; running rows are recorded first.
    """
    svc = orchestrator._services
    plan = orchestrator._plan
    cfg = orchestrator.config
    limits = RunLimits(max_concurrent, cfg.total_timeout, cfg.fail_fast, cfg.error_threshold)
    metrics = orchestrator._metrics
    slots = asyncio.Semaphore(max_concurrent)
    loop = asyncio.get_running_loop()
    inputs = mrun.inputs
    hide = svc.hide
    positions = iter(range(len(inputs)))

    async def worker() -> None:
        for position in positions:  # one shared iterator: each row goes to one worker
            scheduler = Scheduler(
                plan,
                svc,
                limits,
                run_input=inputs[position],
                metrics=metrics,
                slots=slots,
                loop=loop,
            )
            try:
                abort = await scheduler.run()
            except asyncio.CancelledError:
                _file(mrun, position, scheduler, None, hide, cancelled=True)
                raise
            _file(mrun, position, scheduler, abort, hide)
            if on_row is not None:
                on_row(position)

    # No more workers than rows, but the slots stay max_concurrent: a row's own fan-out
    # may use several at once.
    workers = [asyncio.ensure_future(worker()) for _ in range(min(max_concurrent, len(inputs)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        # Every worker records its row as cancelled before it ends; wait for all of them.
        await asyncio.gather(*workers, return_exceptions=True)
        raise


def _file(
    mrun: MapRun,
    position: int,
    scheduler: Scheduler,
    abort: Exception | None,
    hide: Callable[[str], str],
    *,
    cancelled: bool = False,
) -> None:
    """File the row's status, error and values; its records unless it simply went well."""
    records = scheduler.records
    results = scheduler.results
    if abort is None and not cancelled and len(records) == 1:
        # The common row, kept flat: one endpoint, answered.
        (record,) = records.values()
        if record._states[-1] is OK:
            mrun.record_results(position, "ok", results)
            return
    status, error = _status(records, abort, hide, cancelled)
    kept = records if status in ("failed", "cancelled") else None
    mrun.record_results(position, status, results, error, kept)


def _status(
    records: Mapping[str, CallRecord],
    abort: Exception | None,
    hide: Callable[[str], str],
    cancelled: bool,
) -> tuple[str, str | None]:
    """The row's status and one-line error."""
    if cancelled:
        return "cancelled", None
    if isinstance(abort, ConfigError):
        return "failed", _one_line(hide(str(abort)))
    failed = next((r for r in records.values() if r._states[-1] in _FAILED and not r.rescued), None)
    if failed is not None:
        reason = getattr(failed.error, "reason", None) or str(failed.error)
        return "failed", _one_line(hide(f"{failed.endpoint}: {reason}"))
    if abort is not None:
        return "failed", _one_line(hide(str(abort)))
    states = [r._states[-1] for r in records.values()]
    if CACHED in states and all(s is CACHED or s is SKIPPED for s in states):
        return "cached", None
    return "ok", None


def _one_line(text: str) -> str:
    """`text` on one line for a frame cell: error bodies may be multi-line HTML."""
    return " ".join(text.split())


async def drive(
    mrun: MapRun,
    work: Callable[[Callable[[int], None] | None], Coroutine[Any, Any, None]],
    timeout: float | None,
    observer: Any,
) -> pd.DataFrame:
    """Run ``work(on_row)`` (which files rows into `mrun`, calling ``on_row(position)`` as
    each ends) to its end or `timeout`; return the frame.

    Whatever ends the map, the record is marked finished and `observer` (a `MapObserver`
    or None) told, so ``last_map`` always holds every row.

    Raises:
        MapTimeout: `timeout` passed; ``.map_run`` is `mrun`.
    """
    watch = Watch(observer, mrun) if observer is not None else None
    on_row = None
    if watch is not None:
        watch.notify("map_started", mrun)
        on_row = functools.partial(watch.notify, "row_finished", mrun)
    try:
        await run_until(work(on_row), timeout, lambda: MapTimeout(timeout or 0.0, mrun))
    except BaseException as exc:
        mrun.error = exc
        raise
    finally:
        mrun.finished = True
        mrun.ended_at = time.monotonic()
        if watch is not None:
            watch.notify("map_finished", mrun)
    return mrun.frame()


async def run_until(
    work: Coroutine[Any, Any, None], timeout: float | None, timed_out: Callable[[], Exception]
) -> None:
    """Await `work`; after `timeout` seconds cancel it, wait until it has wound down (so
    every row is recorded), and raise ``timed_out()``."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except BaseException:  # cancelled from outside: stop the work, then re-raise
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise timed_out()
    task.result()

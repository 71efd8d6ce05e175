"""``%%orchestrate --over VAR``: the cell's endpoint graph once per row of a notebook table.

The engine's `APIOrchestrator.map` does the work; this module is the notebook's side of
it: which variable, which templates are row fields, and what the cell shows, stores and
raises. Nothing is lost: whatever ends the map (the last row, the stop button, the map
timeout), ``NAME <<`` receives the frame of every row first, and only then does the cell
fail, with one line, if it must.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..enrich import compile_fields
from ..errors import ConfigError, MapTimeout
from . import display as nbdisplay
from ._map_progress import map_progress_observer

if TYPE_CHECKING:
    from ..orchestrator import APIOrchestrator
    from ._options import CellOptions


def row_keys(rows: Any, var: str) -> list[str]:
    """The fields every row may have: a DataFrame's columns, or the keys of the dicts.

    They are what ``{{name}}`` in the cell reads from the row rather than from a notebook
    variable of the same name.

    Raises:
        UsageError: neither a DataFrame nor a list of dicts.
    """
    columns = getattr(rows, "columns", None)
    if columns is not None and hasattr(rows, "index"):
        return [str(c) for c in columns]
    is_list = isinstance(rows, Sequence) and not isinstance(rows, (str, bytes))
    if is_list and all(isinstance(row, Mapping) for row in rows):
        return list(dict.fromkeys(str(k) for row in rows for k in row))
    raise UsageError(
        f"--over {var}: expected a DataFrame or a list of dicts, got {type(rows).__name__}"
    )


def check_fields(fields: dict[str, str] | None, endpoints: list[str]) -> None:
    """Refuse ``--fields`` naming no endpoint before anything is sent.

    Raises:
        UsageError: a path whose first part is not a request of the cell, or a reserved
            column name (``status``, ``error``).
    """
    if fields is None:
        return
    try:
        compile_fields(fields, endpoints)
    except ConfigError as exc:
        raise UsageError(f"--fields: {_unprefixed(exc)}") from None


async def run_map_cell(
    orchestrator: APIOrchestrator,
    rows: Any,
    opts: CellOptions,
    namespace: MutableMapping[str, Any],
) -> Any:
    """Map the graph over `rows`; store the frame; return it as the cell's value.

    Failed rows fail the cell like a failed endpoint does, unless ``--allow-failures``:
    then a short note says how many. The stop button and ``--map-timeout`` keep every
    finished row in ``NAME`` and fail the cell with one line.

    Raises:
        UsageError: interrupted, timed out, failed rows (without --allow-failures), or
            rows or options the map refuses.
    """
    why: str | None = None
    interrupted = False
    frame = None
    try:
        frame = await orchestrator.map(
            rows,
            fields=opts.fields,
            timeout=opts.map_timeout,
            observer=None if opts.quiet else map_progress_observer(),
        )
    except asyncio.CancelledError:
        # The stop button: as for a run, the cell's own task turns it into one line.
        interrupted = True
    except MapTimeout as exc:
        why = str(exc)
    except ConfigError as exc:
        raise UsageError(f"--over {opts.over_var}: {_unprefixed(exc)}") from None
    finally:
        await orchestrator.close()
    mrun = orchestrator.last_map
    assert mrun is not None
    if frame is None:  # stopped early: the partial result
        frame = mrun.frame()
    if opts.store_as:
        namespace[opts.store_as] = frame
    failed = mrun.counts()["failed"]
    stop: str | None = None
    if interrupted or why is not None:
        stop = nbdisplay.map_stopped_message(mrun, why=why, store=opts.store_as)
    elif failed and not opts.allow_failures:
        stop = nbdisplay.map_failure_message(mrun, store=opts.store_as)
    if stop is not None:
        if not opts.quiet:
            nbdisplay.show_map_run(mrun)
        raise UsageError(stop)
    if opts.quiet:
        return None
    from IPython.display import display

    line = mrun.summary()
    if failed:
        line += "; " + nbdisplay.map_failure_message(mrun, store=opts.store_as, allowed=True)
    display({"text/plain": line}, raw=True)
    return frame


def _unprefixed(exc: ConfigError) -> str:
    """The engine's message without its ``map:`` prefix; the flag names the context."""
    return str(exc).removeprefix("map: ")

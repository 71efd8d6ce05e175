"""`MapRun`: the record of one `APIOrchestrator.map`, one outcome per input row.

A map runs the endpoint graph once per row of a DataFrame (or of any list of mappings),
with the row's fields as the run's input. The record is live while the map goes on and is
kept when it is interrupted, times out or crashes, so every finished row survives: rows
that never ran read ``pending``, rows stopped mid-flight ``cancelled``.

Statuses, one per row:

=============  =============================================================================
``ok``         every endpoint answered (or was skipped by its condition, or rescued)
``cached``     every call that would have been sent was answered from the cache
``failed``     an endpoint failed unrescued, or the row's run aborted; ``error`` says which
``cancelled``  the map was interrupted or timed out while this row ran
``pending``    the map stopped before this row started
=============  =============================================================================
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, overload

from ._call import CallRecord
from ._redact import redact_data
from ._template import _MISSING, lookup
from .errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

#: The two columns every map frame ends with, after the chosen fields.
STATUS_COLUMN = "status"
ERROR_COLUMN = "error"
ROW_STATUSES = ("ok", "cached", "failed", "cancelled", "pending")

FieldGetter = Callable[[Mapping[str, Any]], Any]
FieldsSpec = str | Sequence[str] | Mapping[str, "str | FieldGetter"] | None

#: The records of a row that went well: one shared empty mapping, not a dict per row.
NO_RECORDS: Mapping[str, CallRecord] = MappingProxyType({})


@dataclass(slots=True)
class RowOutcome:
    """What one row's run came to: its status, error and field values.

    `values` are the row's field values, taken when the row ended (the responses
    themselves are not kept: a 100,000-row map would hold every body). `records` are the
    row's call records (attempts, timings, states) for rows that did not end ``ok`` or
    ``cached``, the rows one needs to look into; per-endpoint latencies of every row are in
    ``orchestrator.get_metrics()``. ``MapRun.outcomes[i]`` makes one from the map's columns.
    """

    status: str
    error: str | None = None
    values: list[Any] = field(default_factory=list)
    records: Mapping[str, CallRecord] = field(default_factory=lambda: NO_RECORDS)


def compile_fields(fields: FieldsSpec, endpoints: Sequence[str]) -> list[tuple[str, FieldGetter]]:
    """Turn `fields` into ``(column, getter)`` pairs, refusing paths that name no endpoint.

    None gives one column per endpoint holding its whole result; ``"user.name"`` (or a
    list of such paths) a column per path named after it; ``{"city": "user.address.city",
    "n": lambda results: len(results["posts"])}`` chosen names, by path or callable.

    Raises:
        ConfigError: a path whose first part is not an endpoint, or a reserved column name.
    """
    if fields is None:
        pairs: list[tuple[str, str | FieldGetter]] = [(name, name) for name in endpoints]
    elif isinstance(fields, str):
        pairs = [(fields, fields)]
    elif isinstance(fields, Mapping):
        pairs = [(str(col), spec) for col, spec in fields.items()]
    elif isinstance(fields, Sequence):
        pairs = [(str(path), path) for path in fields]
    else:
        raise ConfigError(f"map: fields must be a path, a list of paths or a dict, got {fields!r}")
    compiled = []
    for column, spec in pairs:
        if column in (STATUS_COLUMN, ERROR_COLUMN):
            raise ConfigError(f"map: field column {column!r} is reserved; name it otherwise")
        if any(column == taken for taken, _ in compiled):
            raise ConfigError(f"map: field column {column!r} is listed twice")
        compiled.append((column, _getter(column, spec, endpoints)))
    return compiled


def _getter(column: str, spec: str | FieldGetter, endpoints: Sequence[str]) -> FieldGetter:
    if callable(spec):
        return spec
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"map: field {column!r} must be a path like 'user.name', got {spec!r}")
    head = spec.split(".", 1)[0]
    if head not in endpoints:
        raise ConfigError(
            f"map: field {column!r} reads {spec!r}, but no endpoint is named {head!r}; "
            f"endpoints: {', '.join(endpoints)}"
        )

    def get(results: Mapping[str, Any]) -> Any:
        value = lookup(results, spec)
        return None if value is _MISSING else value

    return get


class MapRun:
    """One map: the input rows, an outcome per row (None until it ends), and the frame.

    Live while the map runs (``finished`` False); final afterwards, also when it was
    interrupted, timed out or raised (``error``).
    """

    def __init__(
        self,
        index: Sequence[Any],
        inputs: Sequence[Mapping[str, Any]],
        fields: list[tuple[str, FieldGetter]],
        *,
        index_names: Sequence[str | None] = (None,),
    ) -> None:
        self.index = list(index)
        self.index_names = list(index_names)
        self.inputs = inputs
        self.fields = fields
        # Kept column by column: a row that went well adds its values to the columns and
        # nothing else, so a 100,000-row map does not leave 200,000 small objects for the
        # garbage collector to walk while it runs. None in `_status` means pending.
        rows = len(inputs)
        self._status: list[str | None] = [None] * rows
        self._error: list[str | None] = [None] * rows
        self._cells: list[list[Any]] = [[None] * rows for _ in fields]
        self._records: dict[int, Mapping[str, CallRecord]] = {}
        self._counts = dict.fromkeys(ROW_STATUSES, 0)  # filed rows by status, kept as filed
        #: Each row's `RowOutcome`, or None while it is pending (a read-only view).
        self.outcomes: Sequence[RowOutcome | None] = _Outcomes(self)
        self.started_at = time.monotonic()
        self.ended_at = self.started_at  #: set when the map ends (`duration_s` until then)
        self.finished = False
        self.error: BaseException | None = None
        self.done = 0  #: rows with an outcome
        #: Secret values to scrub from what `shown_frame` (and so every display) shows.
        self.secret_values: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self._status)

    def record(
        self,
        position: int,
        status: str,
        error: str | None = None,
        values: Sequence[Any] = (),
        records: Mapping[str, CallRecord] | None = None,
    ) -> None:
        """File row `position`'s outcome (the map's workers call this as rows finish);
        missing `values` read None."""
        for j, column in enumerate(self._cells):
            column[position] = values[j] if j < len(values) else None
        self._file(position, status, error, records)

    def record_results(
        self,
        position: int,
        status: str,
        results: Mapping[str, Any],
        error: str | None = None,
        records: Mapping[str, CallRecord] | None = None,
    ) -> None:
        """File row `position` from its results (endpoint name -> result): each field is
        read straight into its column."""
        for column, (_, get) in zip(self._cells, self.fields, strict=True):
            column[position] = get(results)
        self._file(position, status, error, records)

    def _file(
        self,
        position: int,
        status: str,
        error: str | None,
        records: Mapping[str, CallRecord] | None,
    ) -> None:
        counts, before = self._counts, self._status[position]
        if before is None:
            self.done += 1
        else:  # filed again (a Dask chunk that came back after it was marked cancelled)
            counts[before] -= 1
        counts[status] = counts.get(status, 0) + 1
        self._status[position] = status
        self._error[position] = error
        if records:
            self._records[position] = records
        else:
            self._records.pop(position, None)

    def status(self, position: int) -> str:
        """Row `position`'s status (``pending`` until it has an outcome)."""
        return self._status[position] or "pending"

    def outcome(self, position: int) -> RowOutcome | None:
        """Row `position`'s outcome, or None while it is pending."""
        status = self._status[position]
        if status is None:
            return None
        return RowOutcome(
            status,
            self._error[position],
            [column[position] for column in self._cells],
            self._records.get(position, NO_RECORDS),
        )

    def counts(self) -> dict[str, int]:
        """Rows per status, every status listed (pending included). Cheap: kept as rows
        are filed, so a live progress bar can ask on every redraw."""
        return {**self._counts, "pending": len(self) - self.done}

    @property
    def duration_s(self) -> float:
        return (self.ended_at if self.finished else time.monotonic()) - self.started_at

    def rate(self) -> float:
        """Rows finished per second so far."""
        elapsed = self.duration_s
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float:
        """Seconds until every row is done at the current rate (inf before the first row)."""
        rate = self.rate()
        return (len(self.inputs) - self.done) / rate if rate > 0 else math.inf

    def summary(self) -> str:
        """One line: rows by status, wall time and rate."""
        counts = ", ".join(f"{n} {status}" for status, n in self.counts().items() if n)
        return (
            f"{len(self.inputs)} rows ({counts or 'none'}) in {self.duration_s:.2f} s, "
            f"{self.rate():.0f} rows/s"
        )

    def columns(self) -> list[str]:
        return [column for column, _ in self.fields] + [STATUS_COLUMN, ERROR_COLUMN]

    def frame(self) -> pd.DataFrame:
        """The outcome as a DataFrame indexed like the input: fields, status, error.

        ``df.join(map_run.frame())`` puts the enrichment beside the input.
        """
        return self._build(len(self), None)

    def shown_frame(self, rows: int | None = None) -> pd.DataFrame:
        """The frame (its first `rows`) as displays show it: secret-named keys and secret
        values redacted. ``frame()`` itself is the API's data, like `execute`'s result."""
        count = len(self) if rows is None else min(rows, len(self))
        return self._build(count, lambda v: redact_data(v, self.secret_values))

    def _build(self, count: int, shown: Callable[[Any], Any] | None) -> pd.DataFrame:
        """Built column by column: a list per column rather than one per row, so a large
        map's frame costs a few allocations, not one per row."""
        import pandas as pd

        columns: list[list[Any]] = [column[:count] for column in self._cells]
        columns.append([status or "pending" for status in self._status[:count]])
        columns.append(self._error[:count])
        if shown is not None:
            columns = [[shown(v) for v in column] for column in columns]
        labels = self.index[:count]
        if len(self.index_names) > 1:
            index: pd.Index = pd.MultiIndex.from_tuples(labels, names=self.index_names)
        else:
            index = pd.Index(labels, name=self.index_names[0])
        frame = pd.DataFrame(dict(enumerate(columns)), index=index, dtype=object)
        for position in range(len(self.fields)):
            dtype = _dtype_of(frame.iloc[:, position])
            if dtype is not None:
                frame[position] = frame[position].astype(dtype)
        frame.columns = pd.Index(self.columns())
        return frame

    def __repr__(self) -> str:
        state = "finished" if self.finished else "running"
        return f"<MapRun {state}: {self.summary()}>"


class _Outcomes(Sequence["RowOutcome | None"]):
    """`MapRun.outcomes`: each row's `RowOutcome`, made from the columns when asked."""

    __slots__ = ("_run",)

    def __init__(self, run: MapRun) -> None:
        self._run = run

    def __len__(self) -> int:
        return len(self._run)

    @overload
    def __getitem__(self, position: int) -> RowOutcome | None: ...

    @overload
    def __getitem__(self, position: slice) -> list[RowOutcome | None]: ...

    def __getitem__(self, position: int | slice) -> RowOutcome | list[RowOutcome | None] | None:
        if isinstance(position, slice):
            return [self._run.outcome(i) for i in range(*position.indices(len(self)))]
        return self._run.outcome(range(len(self))[position])


def _dtype_of(column: pd.Series) -> str | None:
    """The dtype a field column of plain values should have, or None to keep objects.

    Whole numbers become nullable ``Int64`` (a failed row is <NA>, not a float NaN that
    would turn 21 into 21.0 when the column feeds another map), booleans ``boolean``,
    other numbers ``float64``. Text and nested values stay objects, with None for missing,
    so ``if row.name:`` never meets pd.NA.
    """
    kinds = {type(v) for v in column if v is not None}
    if not kinds:
        return None
    if kinds == {bool}:
        return "boolean"
    if kinds == {int}:
        return "Int64"
    if kinds <= {int, float}:
        return "float64"
    return None

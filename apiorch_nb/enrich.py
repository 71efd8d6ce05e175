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
from typing import TYPE_CHECKING, Any

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


@dataclass(slots=True)
class RowOutcome:
    """What one row's run came to: its status, error and field values.

    `values` are the row's field values, taken when the row ended (the responses
    themselves are not kept: a 100,000-row map would hold every body). `records` are the
    row's call records (attempts, timings, states) for rows that did not end ``ok`` or
    ``cached``, the rows one needs to look into; per-endpoint latencies of every row are in
    ``orchestrator.get_metrics()``.
    """

    status: str
    error: str | None = None
    values: list[Any] = field(default_factory=list)
    records: dict[str, CallRecord] = field(default_factory=dict)


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
        self.outcomes: list[RowOutcome | None] = [None] * len(self.inputs)
        self.started_at = time.monotonic()
        self.ended_at = self.started_at
        self.finished = False
        self.error: BaseException | None = None
        self.done = 0  #: rows with an outcome
        #: Secret values to scrub from what `shown_frame` (and so every display) shows.
        self.secret_values: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.inputs)

    def record(self, position: int, outcome: RowOutcome) -> None:
        """File row `position`'s outcome (the map's workers call this as rows finish)."""
        if self.outcomes[position] is None:
            self.done += 1
        self.outcomes[position] = outcome
        self.ended_at = time.monotonic()

    def counts(self) -> dict[str, int]:
        """Rows per status, every status listed (pending included)."""
        counts = dict.fromkeys(ROW_STATUSES, 0)
        counts["pending"] = len(self.inputs) - self.done
        for outcome in self.outcomes:
            if outcome is not None:
                counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts

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

    def row_values(self, outcome: RowOutcome | None) -> list[Any]:
        """The frame's cells for one row: each field, then status and error."""
        if outcome is None:
            return [None] * len(self.fields) + ["pending", None]
        return [*outcome.values, outcome.status, outcome.error]

    def values_of(self, results: Mapping[str, Any]) -> list[Any]:
        """The field values of one row's `results` (endpoint name -> result)."""
        return [get(results) for _, get in self.fields]

    def columns(self) -> list[str]:
        return [column for column, _ in self.fields] + [STATUS_COLUMN, ERROR_COLUMN]

    def frame(self) -> pd.DataFrame:
        """The outcome as a DataFrame indexed like the input: fields, status, error.

        ``df.join(map_run.frame())`` puts the enrichment beside the input.
        """
        return self._build(len(self.outcomes), lambda v: v)

    def shown_frame(self, rows: int | None = None) -> pd.DataFrame:
        """The frame (its first `rows`) as displays show it: secret-named keys and secret
        values redacted. ``frame()`` itself is the API's data, like `execute`'s result."""
        count = len(self.outcomes) if rows is None else min(rows, len(self.outcomes))
        return self._build(count, lambda v: redact_data(v, self.secret_values))

    def _build(self, count: int, shown: Callable[[Any], Any]) -> pd.DataFrame:
        import pandas as pd

        rows = [[shown(v) for v in self.row_values(o)] for o in self.outcomes[:count]]
        labels = self.index[:count]
        if len(self.index_names) > 1:
            index: pd.Index = pd.MultiIndex.from_tuples(labels, names=self.index_names)
        else:
            index = pd.Index(labels, name=self.index_names[0])
        frame = pd.DataFrame(rows, index=index, columns=self.columns(), dtype=object)
        for column in frame.columns[: len(self.fields)]:
            dtype = _dtype_of(frame[column])
            if dtype is not None:
                frame[column] = frame[column].astype(dtype)
        return frame

    def __repr__(self) -> str:
        state = "finished" if self.finished else "running"
        return f"<MapRun {state}: {self.summary()}>"


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

"""Input rows for `map`: a DataFrame or a list of mappings, as plain Python dicts.

Each row becomes the run's input, so its values fill templates (``{id}``) and JSON bodies.
pandas and numpy values are turned into plain Python (``np.int64(7)`` into ``7``, NaN and
NaT into None) so bodies serialise and placeholders format as the user expects.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, overload

from .errors import ConfigError


def is_dask_frame(rows: Any) -> bool:
    """True for a Dask DataFrame, without importing dask."""
    return type(rows).__module__.startswith("dask") and hasattr(rows, "to_delayed")


class ColumnRows(Sequence[dict[str, Any]]):
    """A table's rows as dicts, each made when it is asked for.

    A map over 100,000 rows keeps its columns (plain Python values, converted once) rather
    than 100,000 dicts, which the garbage collector would walk over and over for the whole
    map. Each row's dict lives only while its row runs. A slice is a list of dicts (what a
    Dask chunk ships to its worker).
    """

    __slots__ = ("_columns", "_length", "_names")

    def __init__(self, names: list[str], columns: list[list[Any]], length: int) -> None:
        self._names = names
        self._columns = columns
        self._length = length

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, position: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, position: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, position: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(position, slice):
            return [self[i] for i in range(*position.indices(self._length))]
        if not -self._length <= position < self._length:
            raise IndexError(position)
        columns = zip(self._names, self._columns, strict=True)
        return {name: column[position] for name, column in columns}


def table_rows(rows: Any) -> tuple[list[Any], Sequence[dict[str, Any]], list[str | None]]:
    """``(index labels, row dicts, index names)`` of a DataFrame or an iterable of mappings.

    Raises:
        ConfigError: something that is neither, or a row that is not a mapping.
    """
    if hasattr(rows, "to_dict") and hasattr(rows, "columns") and hasattr(rows, "index"):
        names = [str(c) for c in rows.columns]
        if len(set(names)) != len(names):
            raise ConfigError(f"map: the DataFrame has duplicate column names: {names}")
        # tolist() hands numpy numbers back as Python ones; plain() does the rest (NaN, NaT).
        columns = [[plain(v) for v in rows.iloc[:, i].tolist()] for i in range(len(names))]
        return list(rows.index), ColumnRows(names, columns, len(rows)), list(rows.index.names)
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
        raise ConfigError(
            f"map: rows must be a DataFrame or a list of dicts, got {type(rows).__name__}"
        )
    records = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ConfigError(f"map: row {i} must be a mapping (a dict), got {row!r}")
        records.append({str(k): plain(v) for k, v in row.items()})
    return list(range(len(records))), records, [None]


def plain(value: Any) -> Any:
    """A numpy/pandas scalar as the plain Python value; NaN/NaT/NA as None."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    kind = type(value).__module__
    if kind.startswith(("numpy", "pandas")):
        try:
            import pandas as pd

            if pd.isna(value):
                return None
        except (TypeError, ValueError):  # array-likes: not a scalar NA
            pass
        if hasattr(value, "item"):
            return value.item()
        if hasattr(value, "isoformat"):
            return value.isoformat()
    return value

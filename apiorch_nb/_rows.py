"""Input rows for `map`: a DataFrame or a list of mappings, as plain Python dicts.

Each row becomes the run's input, so its values fill templates (``{id}``) and JSON bodies.
pandas and numpy values are turned into plain Python (``np.int64(7)`` into ``7``, NaN and
NaT into None) so bodies serialise and placeholders format as the user expects.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConfigError


def is_dask_frame(rows: Any) -> bool:
    """True for a Dask DataFrame, without importing dask."""
    return type(rows).__module__.startswith("dask") and hasattr(rows, "to_delayed")


def table_rows(rows: Any) -> tuple[list[Any], list[dict[str, Any]], list[str | None]]:
    """``(index labels, row dicts, index names)`` of a DataFrame or an iterable of mappings.

    Raises:
        ConfigError: something that is neither, or a row that is not a mapping.
    """
    if hasattr(rows, "to_dict") and hasattr(rows, "columns") and hasattr(rows, "index"):
        columns = [str(c) for c in rows.columns]
        if len(set(columns)) != len(columns):
            raise ConfigError(f"map: the DataFrame has duplicate column names: {columns}")
        records = [
            {col: plain(v) for col, v in zip(columns, values, strict=True)}
            for values in rows.itertuples(index=False, name=None)
        ]
        return list(rows.index), records, list(rows.index.names)
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

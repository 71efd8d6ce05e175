"""The ``%%orchestrate`` magic line: options, ``NAME <<``, and their defaults from %config."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError

_STORE = re.compile(r"(?:^|\s)([A-Za-z_]\w*)\s*<<(?=\s|$)")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]*)\s*$")
_UNITS = {
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}


@dataclass
class CellOptions:
    """What one ``%%orchestrate`` run was asked to do."""

    mode: str = "sequential"
    max_concurrent: int = 10
    total_timeout: float | None = None
    fail_fast: bool = False
    rate_limit: tuple[int, float] | None = None  # (requests, window seconds), all endpoints
    cache_ttl: float | None = None
    input_var: str | None = None
    allow_failures: bool = False
    dry_run: bool = False
    quiet: bool = False
    file: str | None = None
    store_as: str | None = None
    over_var: str | None = None  # --over: map the graph over this variable's rows
    fields: dict[str, str] | None = None  # --fields: column -> result path
    map_timeout: float | None = None  # seconds for the whole map
    cache_url: str = "memory"
    cache_given: bool = False  # --cache was on the line (not only a %config default)
    limiter_url: str = "memory"


def split_store_target(line: str) -> tuple[str, str | None]:
    """Take ``NAME <<`` out of the magic line (jupysql style); return (rest, NAME)."""
    match = _STORE.search(line)
    if match is None:
        return line, None
    rest = (line[: match.start()] + " " + line[match.end() :]).strip()
    return rest, match.group(1)


def parse_fields(text: str) -> dict[str, str]:
    """``"user.name, city=user.address.city"`` -> ``{"user.name": "user.name", "city": ...}``.

    Each comma-separated item is a result path (the column is named after it) or
    ``column=path``; the order is the frame's column order.

    Raises:
        ConfigError: an empty item, column or path, or a column named twice.
    """
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]  # IPython's magic_arguments keeps the quotes of a quoted value
    fields: dict[str, str] = {}
    for item in text.split(","):
        column, eq, path = (part.strip() for part in item.partition("="))
        if not eq:
            path = column
        if not column or not path:
            raise ConfigError(
                f"--fields takes comma-separated paths like 'user.name, city=user.address.city'"
                f", got {text!r}"
            )
        if column in fields:
            raise ConfigError(f"--fields names the column {column!r} twice")
        fields[column] = path
    return fields


def parse_rate(text: str) -> tuple[int, float]:
    """``100/min``, ``10/s``, ``5/30s`` -> (limit, window seconds).

    Raises:
        ConfigError: not of that form.
    """
    match = _RATE.match(text.lower())
    if not match or match.group(3) not in _UNITS:
        raise ConfigError(f"rate limit must look like 100/min, 10/s or 5/30s, got {text!r}")
    count, amount, unit = match.groups()
    window = (float(amount) if amount else 1.0) * _UNITS[unit]
    if int(count) < 1 or window <= 0:
        raise ConfigError(f"rate limit must be at least 1 per a positive window, got {text!r}")
    return int(count), window

"""The builder's text fields <-> engine values.

The form holds text (a number field may hold ``"abc"`` while the user types). Parsing turns
what can be read into numbers, lists and JSON and passes anything else through unchanged,
so that the engine's own validation names the field and the value (`_builder_validate`).
The rules for bodies, headers and params are the cell language's, so a form and its
``%%orchestrate`` cell text give the same endpoints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigError

_STATUS_SPLIT = re.compile(r"[\s,]+")
_OFF = ("", "off", "none")


def number(text: str, *, integer: bool = False, default: Any = None) -> Any:
    """``"3"`` -> 3, ``"2.5"`` -> 2.5, ``""`` -> `default`; unreadable text is returned as is.

    An integer field given ``"1.5"`` gets the float, so the engine says it must be an
    integer; ``"abc"`` stays a string, so the engine says it must be a number.
    """
    stripped = text.strip()
    if not stripped:
        return default
    try:
        return int(stripped) if integer else float(stripped)
    except ValueError:
        pass
    try:
        return float(stripped)
    except ValueError:
        return stripped


def statuses(text: str) -> Any:
    """``"429, 503"`` -> [429, 503]; ``""`` or ``"off"`` -> []; otherwise the text (refused)."""
    if text.strip().lower() in _OFF:
        return []
    try:
        return [int(word) for word in _STATUS_SPLIT.split(text.strip()) if word]
    except ValueError:
        return text


def body(text: str) -> Any:
    """The body as the cell language reads it: JSON when it starts with ``{``/``[`` and
    parses, else text; blank lines around it dropped; empty -> None."""
    lines = text.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return None
    stripped = "\n".join(lines)
    if stripped.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(stripped)
        except ValueError:
            pass  # sent as text, as a .http body that does not parse is
    return stripped


def body_text(value: Any, where: str) -> str:
    """A loaded endpoint's body as the form shows it.

    Raises:
        ConfigError: a body that is neither text nor JSON.
    """
    if value is None:
        return ""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: a binary body can't be edited in the builder") from None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: body {value!r} can't be edited as JSON") from None


def headers(rows: Iterable[tuple[str, str]], where: str) -> dict[str, str]:
    """Header rows -> dict; blank rows are ignored.

    Raises:
        ConfigError: a value without a name, or a name given twice (any case), which the
            cell language refuses too.
    """
    out: dict[str, str] = {}
    seen: set[str] = set()
    for key, value in rows:
        key = key.strip()
        if not key:
            if value.strip():
                raise ConfigError(f"{where}: headers: the value {value!r} has no name")
            continue
        if key.lower() in seen:
            raise ConfigError(f"{where}: headers: {key!r} is given twice")
        seen.add(key.lower())
        out[key] = value
    return out


def params(rows: Iterable[tuple[str, str]], where: str) -> dict[str, Any]:
    """Query rows -> dict; a repeated name becomes a list, as in the cell language.

    Raises:
        ConfigError: a value without a name.
    """
    out: dict[str, Any] = {}
    for key, value in rows:
        key = key.strip()
        if not key:
            if value.strip():
                raise ConfigError(f"{where}: params: the value {value!r} has no name")
            continue
        if key in out:
            previous = out[key]
            out[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[key] = value
    return out


def param_rows(value: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A loaded endpoint's params as rows (a list gives one row per item)."""
    rows = []
    for key, item in value.items():
        for one in item if isinstance(item, (list, tuple)) else [item]:
            if one is None:
                continue
            text = ("true" if one else "false") if isinstance(one, bool) else str(one)
            rows.append((str(key), text))
    return rows


def with_json_content_type(head: dict[str, str], value: Any) -> dict[str, str]:
    """A JSON body gets ``Content-Type: application/json`` unless a type is set, as a
    ``%%orchestrate`` cell's body does, so the builder and its cell text agree."""
    if isinstance(value, (dict, list)) and not any(k.lower() == "content-type" for k in head):
        return {**head, "Content-Type": "application/json"}
    return head


def number_text(value: float) -> str:
    """A number as the form shows it: ``30`` rather than ``30.0``; exact otherwise."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def opt_text(value: float | None) -> str:
    return "" if value is None else number_text(value)

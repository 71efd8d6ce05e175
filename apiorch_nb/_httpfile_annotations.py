"""``# @key value`` annotations -> `APIEndpoint` keyword arguments, with errors that point."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any

from ._httpfile_model import Annotation, HttpDocument, HttpRequest
from ._httpfile_templates import Site
from .errors import CellSyntaxError

_DURATION = re.compile(
    r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?)?",
    re.IGNORECASE,
)
_RATE = re.compile(r"(\d+)\s*(?:/\s*(\d+(?:\.\d*)?|\.\d+)?\s*([A-Za-z]+)?)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_RATE_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
}
#: Annotation -> the `APIEndpoint` field that receives the named callable.
CALLABLE_FIELDS = {
    "condition": "condition",
    "transform_input": "transform_input",
    "transform_output": "transform_output",
    "parser": "response_parser",
    "on_error": "error_handler",
}
_OFF = ("off", "none", "no", "false")


class _Value:
    """An annotation's value and where it stands, for errors with a caret."""

    __slots__ = ("annotation", "column", "doc", "key")

    def __init__(self, doc: HttpDocument, key: str, annotation: Annotation) -> None:
        self.doc = doc
        self.key = key
        self.annotation = annotation
        raw = doc.source(annotation.line)
        self.column = len(raw.rstrip()) - len(annotation.value)

    @property
    def text(self) -> str:
        return self.annotation.value

    def error(self, message: str, offset: int = 0, width: int | None = None) -> CellSyntaxError:
        if not self.text:
            raw = self.doc.source(self.annotation.line)
            column = raw.index("@")
            return self.doc.error(f"@{self.key} {message}", self.annotation.line, column=column)
        return self.doc.error(
            f"@{self.key} {message}",
            self.annotation.line,
            column=self.column + offset,
            width=len(self.text) - offset if width is None else width,
        )

    def words(self) -> list[tuple[str, int]]:
        """The value split on commas and spaces, each with its offset in the value."""
        return [(m.group(0), m.start()) for m in re.finditer(r"[^,\s]+", self.text)]


def endpoint_fields(
    doc: HttpDocument, request: HttpRequest, namespace: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Site]]:
    """The `APIEndpoint` keyword arguments of `request`'s annotations, and its explicit
    ``depends_on`` names with the site of each.

    Raises:
        CellSyntaxError: a value that does not fit its annotation, an unknown dependency,
            a callable that is missing from `namespace` or not callable.
    """
    fields: dict[str, Any] = {}
    depends: dict[str, Site] = {}
    names = [r.name for r in doc.requests]
    for key, annotation in request.annotations.items():
        value = _Value(doc, key, annotation)
        if key == "depends_on":
            depends = _depends_on(value, request.name, names)
        elif key in CALLABLE_FIELDS:
            fields[CALLABLE_FIELDS[key]] = _callable(value, namespace)
        elif key in _SETTERS:
            fields.update(_SETTERS[key](value))
    return fields, depends


def _depends_on(value: _Value, own: str, names: list[str]) -> dict[str, Site]:
    words = value.words()
    if not words:
        raise value.error("needs the names of requests in this cell")
    out: dict[str, Site] = {}
    for word, offset in words:
        if word == own:
            raise value.error("names the request itself", offset, len(word))
        if word not in names:
            close = difflib.get_close_matches(word, names, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            known = ", ".join(names)
            raise value.error(
                f"names {word!r}, which is not a request in this cell ({known}){hint}",
                offset,
                len(word),
            )
        out.setdefault(word, (value.annotation.line, value.column + offset, len(word)))
    return out


def _retry(value: _Value) -> dict[str, Any]:
    words = value.words()
    if not 1 <= len(words) <= 2 or not words[0][0].isdigit():
        raise value.error("expects `@retry COUNT [DELAY]`, e.g. `@retry 3 0.5s`")
    fields: dict[str, Any] = {"retry_count": int(words[0][0])}
    if len(words) == 2:
        fields["retry_delay"] = _seconds(value, *words[1], what="delay")
    return fields


def _retry_on(value: _Value) -> dict[str, Any]:
    if value.text.lower() in _OFF:
        return {"retry_on": ()}
    words = value.words()
    if not words:
        raise value.error("expects HTTP status codes, e.g. `@retry_on 429, 503`")
    statuses = []
    for word, offset in words:
        if not word.isdigit() or not 100 <= int(word) <= 599:
            raise value.error(
                f"expects HTTP status codes (100-599), got {word!r}", offset, len(word)
            )
        statuses.append(int(word))
    return {"retry_on": tuple(statuses)}


def _timeout(value: _Value) -> dict[str, Any]:
    seconds = _seconds(value, value.text, 0, what="timeout")
    if seconds <= 0:
        raise value.error("must be more than 0 seconds")
    return {"timeout": seconds}


def _rate_limit(value: _Value) -> dict[str, Any]:
    match = _RATE.fullmatch(value.text)
    if match is None or (match.group(2) is None and match.group(3) is None and "/" in value.text):
        raise value.error("expects `@rate_limit N/UNIT` (s, min, hour) or `N/30s`, e.g. `10/min`")
    count, amount, unit = match.groups()
    fields: dict[str, Any] = {"rate_limit": int(count)}
    if int(count) < 1:
        raise value.error("needs at least 1 request per window")
    if amount is None and unit is None:
        return fields
    if unit is not None and unit.lower() not in _RATE_UNITS:
        offset = match.start(3)
        units = "s, sec, second, m, min, minute, h, hour"
        raise value.error(f"unknown unit {unit!r} (use {units})", offset, len(unit))
    window = (float(amount) if amount else 1.0) * (_RATE_UNITS[unit.lower()] if unit else 1.0)
    if window <= 0:
        raise value.error("needs a window of more than 0 seconds")
    fields["rate_limit_window"] = window
    return fields


def _burst(value: _Value) -> dict[str, Any]:
    if not value.text.isdigit() or int(value.text) < 1:
        raise value.error(f"expects a whole number of requests >= 1, got {value.text!r}")
    return {"burst_limit": int(value.text)}


def _cache(value: _Value) -> dict[str, Any]:
    if value.text.lower() in _OFF:
        return {"cache_ttl": 0.0}
    return {"cache_ttl": _seconds(value, value.text, 0, what="cache TTL")}


def _seconds(value: _Value, text: str, offset: int, *, what: str) -> float:
    """``5`` / ``1.5`` / ``500ms`` / ``2s`` / ``5m`` / ``1h`` -> seconds."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise value.error(
            f"expects a {what} like 5, 1.5, 500ms, 2s or 5m, got {text!r}", offset, len(text)
        )
    unit = (match.group(2) or "s").lower()
    scale = _UNIT_SECONDS["ms" if unit == "ms" else unit[0]]
    return float(match.group(1)) * scale


def _callable(value: _Value, namespace: Mapping[str, Any]) -> Callable[..., Any]:
    if not value.text:
        raise value.error("needs the name of a function in the notebook")
    head, *rest = value.text.split(".")
    if head not in namespace:
        candidates = [k for k, v in namespace.items() if isinstance(k, str) and callable(v)]
        close = difflib.get_close_matches(head, candidates, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise value.error(
            f"names {head!r}, which is not defined in the notebook{hint}", 0, len(head)
        )
    obj = namespace[head]
    for attr in rest:
        if attr.startswith("_") or not hasattr(obj, attr):
            raise value.error(f"{value.text!r}: {type(obj).__name__} has no attribute {attr!r}")
        obj = getattr(obj, attr)
    if not callable(obj):
        raise value.error(f"names {value.text!r}, a {type(obj).__name__}, not a function")
    return obj  # type: ignore[no-any-return]


_SETTERS: dict[str, Callable[[_Value], dict[str, Any]]] = {
    "retry": _retry,
    "retry_on": _retry_on,
    "timeout": _timeout,
    "rate_limit": _rate_limit,
    "burst": _burst,
    "cache": _cache,
}

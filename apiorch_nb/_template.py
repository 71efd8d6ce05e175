"""`{name}` / `{name.field.0}` placeholders in URLs, params, headers and bodies.

Templates are compiled once per endpoint, so an endpoint without placeholders costs nothing
per call. ``{{`` and ``}}`` are literal braces. A placeholder that nothing fills is an error
naming the endpoint and the placeholder, never a silent literal.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .errors import TemplateError

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{(\$?[A-Za-z_][\w-]*(?:\.[\w-]+)*)\}")
_MISSING = object()
_NO_SYSTEM: Mapping[str, Any] = MappingProxyType({})


class Context(Mapping[str, Any]):
    """What an endpoint can see: its own input, earlier results by name, then the run input.

    Lookup goes through the layers in that order, so ``context["amount"]`` finds a field of
    the endpoint's input and ``context["user"]`` the result of the endpoint named ``user``.
    ``condition`` callables receive one of these. Names starting with ``$`` (such as
    ``$secrets``) come only from `system`, which no input or result can shadow.
    """

    __slots__ = ("input", "results", "run_input", "system")

    def __init__(
        self,
        input: Any,
        results: Mapping[str, Any],
        run_input: Any,
        system: Mapping[str, Any] | None = None,
    ) -> None:
        self.input = input
        self.results = results
        self.run_input = run_input
        self.system = system or _NO_SYSTEM

    def _layers(self) -> tuple[Mapping[str, Any], ...]:
        layers: list[Mapping[str, Any]] = []
        if isinstance(self.input, Mapping):
            layers.append(self.input)
        layers.append(self.results)
        if isinstance(self.run_input, Mapping) and self.run_input is not self.input:
            layers.append(self.run_input)
        return tuple(layers)

    def __getitem__(self, key: str) -> Any:
        if key[0] == "$":
            return self.system[key]
        # The layers of _layers(), inline: this runs once per placeholder per call, so a
        # plain dict skips the (slower) ABC check.
        given = self.input
        if (type(given) is dict or isinstance(given, Mapping)) and key in given:
            return given[key]
        if key in self.results:
            return self.results[key]
        run_input = self.run_input
        if (
            run_input is not given
            and (type(run_input) is dict or isinstance(run_input, Mapping))
            and key in run_input
        ):
            return run_input[key]
        raise KeyError(key)

    def __iter__(self) -> Any:
        seen: set[str] = set()
        for layer in self._layers():
            for key in layer:
                if key not in seen:
                    seen.add(key)
                    yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Context(input={self.input!r}, results={list(self.results)!r})"


def has_placeholders(value: Any) -> bool:
    """True if `value` (a string, or dict/list holding strings) contains a placeholder."""
    if isinstance(value, str):
        return ("{" in value or "}" in value) and _PLACEHOLDER.search(value) is not None
    if isinstance(value, Mapping):
        return any(has_placeholders(k) or has_placeholders(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(has_placeholders(v) for v in value)
    return False


def placeholder_heads(value: Any) -> set[str]:
    """The first name of every placeholder in `value` (``{user.id}`` -> ``user``)."""
    if isinstance(value, str):
        return {m.group(1).split(".", 1)[0] for m in _PLACEHOLDER.finditer(value) if m.group(1)}
    if isinstance(value, Mapping):
        return set().union(*(placeholder_heads(k) | placeholder_heads(v) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return set().union(*(placeholder_heads(v) for v in value))
    return set()


def lookup(context: Mapping[str, Any], path: str) -> Any:
    """Follow a dotted path through mappings, attributes and list indices; _MISSING if absent.

    Attribute steps never reach private or dunder names, so a template cannot walk from a
    result into the interpreter's internals.
    """
    if "." not in path:  # {id}: the common case, one name
        return context.get(path, _MISSING)
    head, *rest = path.split(".")
    value = context.get(head, _MISSING)
    for part in rest:
        if value is _MISSING:
            break
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, (list, tuple)) and part.lstrip("-").isdigit():
            index = int(part)
            value = value[index] if -len(value) <= index < len(value) else _MISSING
        elif part.startswith("_"):
            value = _MISSING
        else:
            value = getattr(value, part, _MISSING)
    return value


def render(value: Any, context: Mapping[str, Any], endpoint: str, field: str) -> Any:
    """Fill every placeholder in `value`.

    A string that is exactly one placeholder keeps the value's type (``{"id": "{user.id}"}``
    sends the number); otherwise values are formatted into the string, strings and numbers
    as they are and anything else (dicts, lists, booleans, None) as JSON, which is what an
    HTTP API expects to read.

    Raises:
        TemplateError: a placeholder that nothing in `context` fills.
    """
    if isinstance(value, str):
        return _render_str(value, context, endpoint, field)
    if not value:  # None, {}, []: nothing to fill (the common case for params and headers)
        return value
    if isinstance(value, Mapping):
        return {
            render(k, context, endpoint, field): render(v, context, endpoint, f"{field}.{k}")
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [render(v, context, endpoint, field) for v in value]
    if isinstance(value, tuple):  # has_placeholders looks into tuples, so render must too
        return tuple(render(v, context, endpoint, field) for v in value)
    return value


def _render_str(text: str, context: Mapping[str, Any], endpoint: str, field: str) -> Any:
    if "{" not in text and "}" not in text:
        return text
    whole, parts = _compiled(text)
    if whole is not None:
        value = lookup(context, whole)
        if value is _MISSING:
            raise TemplateError(endpoint, whole, field)
        return value
    pieces = list(parts)
    for i in range(1, len(pieces), 2):  # odd positions hold placeholder paths
        value = lookup(context, pieces[i])
        if value is _MISSING:
            raise TemplateError(endpoint, pieces[i], field)
        if value is None and field == "url":
            # A URL with "null" in it is never what was meant: a missing id in a row
            # fails that call (and its map row), rather than calling /users/null.
            raise TemplateError(endpoint, pieces[i], field, why="is None (a missing value)")
        pieces[i] = _as_text(value)
    return "".join(pieces)


@functools.lru_cache(maxsize=4096)
def _compiled(text: str) -> tuple[str | None, tuple[str, ...]]:
    """``(path, ())`` for a string that is exactly one placeholder, else ``(None, parts)``:
    literal text and placeholder paths alternating, literals first (``{{``/``}}`` undone).

    Parsed once per distinct template: rendering then only looks values up and joins.
    """
    whole = _PLACEHOLDER.fullmatch(text)
    if whole and whole.group(1):
        return whole.group(1), ()
    parts: list[str] = []
    literal: list[str] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(text):
        literal.append(text[pos : match.start()])
        pos = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        parts += ["".join(literal), match.group(1)]
        literal = []
    literal.append(text[pos:])
    parts.append("".join(literal))
    return None, tuple(parts)


def _as_text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value
    if kind is int or kind is float:  # bool, an int subclass, goes to JSON below
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)

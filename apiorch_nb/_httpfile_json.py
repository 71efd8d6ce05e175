"""JSON bodies of a ``.http`` document: parsed into dicts and lists with placeholders kept.

Placeholders are swapped for sentinels before parsing: inside a JSON string as they are,
elsewhere quoted, so ``{"id": {{user.id}}}`` parses and then becomes
``{"id": "{user.id}"}``, which the engine fills keeping the value's type.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._httpfile_templates import Kind, Piece, escape

_SENTINEL = re.compile("\ue000(\\d+)\ue001")


def json_body(pieces: list[Piece]) -> tuple[bool, Any]:
    """(True, parsed body with placeholders in its strings) or (False, None) if not JSON.

    Substituted values are JSON-escaped where they land inside a string and inserted as
    they are elsewhere (so a notebook dict becomes a nested object).
    """
    out: list[str] = []
    placeholders: list[str] = []
    lexer = _StringTracker()
    for kind, text in pieces:
        if kind is Kind.PLACEHOLDER:
            token = f"\ue000{len(placeholders)}\ue001"
            placeholders.append(text)
            out.append(token if lexer.in_string else f'"{token}"')
        elif kind is Kind.VALUE and lexer.in_string:
            out.append(json.dumps(text, ensure_ascii=False)[1:-1])
        else:
            if "\ue000" in text or "\ue001" in text:
                return False, None
            out.append(text)
            lexer.feed(text)
    try:
        data = json.loads("".join(out))
    except ValueError:
        return False, None
    return True, _restore(data, placeholders)


def _restore(value: Any, placeholders: list[str]) -> Any:
    if isinstance(value, str):
        parts: list[str] = []
        pos = 0
        for match in _SENTINEL.finditer(value):
            parts.append(escape(value[pos : match.start()]))
            parts.append("{" + placeholders[int(match.group(1))] + "}")
            pos = match.end()
        parts.append(escape(value[pos:]))
        return "".join(parts)
    if isinstance(value, dict):
        return {_restore(k, placeholders): _restore(v, placeholders) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v, placeholders) for v in value]
    return value


class _StringTracker:
    """Tracks whether the JSON text fed so far ends inside a string literal."""

    __slots__ = ("escaped", "in_string")

    def __init__(self) -> None:
        self.in_string = False
        self.escaped = False

    def feed(self, text: str) -> None:
        for char in text:
            if not self.in_string:
                self.in_string = char == '"'
            elif self.escaped:
                self.escaped = False
            elif char == "\\":
                self.escaped = True
            elif char == '"':
                self.in_string = False

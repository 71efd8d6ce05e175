"""Kernel-side tab completion inside ``%%orchestrate`` cells.

On the magic line: options and modes. In the cell: annotation keys after ``# @``, endpoint
names after ``@depends_on``, notebook callables after ``@condition`` and the other
callable annotations. Outside ``%%orchestrate`` cells it stays out of the way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from IPython.core.completer import (
    CompletionContext,
    SimpleCompletion,
    SimpleMatcherResult,
    context_matcher,
)

from .._httpfile_parse import KNOWN_ANNOTATIONS
from ..config import OrchestrationMode

OPTIONS = (
    "--mode",
    "--max-concurrent",
    "--total-timeout",
    "--fail-fast",
    "--rate-limit",
    "--cache-ttl",
    "--input",
    "--allow-failures",
    "--dry-run",
    "--quiet",
    "--file",
    "--over",
    "--fields",
    "--map-timeout",
    "--cache",
    "--limiter",
)
ANNOTATIONS = KNOWN_ANNOTATIONS  # the cell language owns the list
CALLABLE_ANNOTATIONS = frozenset(
    {"condition", "transform_input", "transform_output", "parser", "on_error"}
)
_NAME = re.compile(r"^\s*(?:#|//)\s*@name\s+([\w-]+)", re.MULTILINE)
_TITLE = re.compile(r"^###\s*([A-Za-z_][\w-]*)\s*$", re.MULTILINE)
_ANNOTATION = re.compile(r"^\s*(?:#|//)\s*@(\w*)(?:\s+(.*))?$")


def make_matcher(namespace: Callable[[], Mapping[str, Any]]) -> Any:
    """A completion matcher bound to the notebook namespace (for callables)."""

    @context_matcher(identifier="apiorch_nb.orchestrate")  # type: ignore[misc]
    def orchestrate_matcher(context: CompletionContext) -> SimpleMatcherResult:
        words = candidates(
            context.full_text, context.cursor_line, context.text_until_cursor, namespace()
        )
        token = context.token
        found = [SimpleCompletion(w, type="apiorch") for w in words if w.startswith(token)]
        return {"completions": found, "suppress": bool(found)}

    return orchestrate_matcher


def candidates(
    full_text: str, cursor_line: int, before_cursor: str, namespace: Mapping[str, Any]
) -> list[str]:
    """What may complete at the cursor (unfiltered by the token being typed)."""
    lines = full_text.split("\n")
    if not lines or not lines[0].startswith("%%orchestrate"):
        return []
    if cursor_line == 0:
        words = before_cursor.split()
        if len(words) >= 2 and words[-2] in ("--mode", "-m") and not before_cursor.endswith(" "):
            return [m.value for m in OrchestrationMode]
        if before_cursor.endswith(("--mode ", "-m ")):
            return [m.value for m in OrchestrationMode]
        return list(OPTIONS)
    match = _ANNOTATION.match(before_cursor)
    if match is None:
        return []
    key, value = match.group(1), match.group(2)
    if value is None:  # still typing the key
        return list(ANNOTATIONS)
    if key == "depends_on":
        own = _current_name(lines, cursor_line)
        return [n for n in endpoint_names(full_text) if n != own]
    if key in CALLABLE_ANNOTATIONS:
        return sorted(
            name
            for name, obj in namespace.items()
            if callable(obj) and not name.startswith("_") and not isinstance(obj, type)
        )
    return []


def endpoint_names(text: str) -> list[str]:
    """Request names declared in the cell (``# @name`` or an identifier ``### Title``)."""
    return list(dict.fromkeys(_NAME.findall(text) + _TITLE.findall(text)))


def _current_name(lines: list[str], cursor_line: int) -> str | None:
    """The name of the request block the cursor is in, to leave it out of @depends_on."""
    start = cursor_line
    while start > 0 and not lines[start].startswith("###"):
        start -= 1
    end = cursor_line
    while end + 1 < len(lines) and not lines[end + 1].startswith("###"):
        end += 1
    names = _NAME.findall("\n".join(lines[start : end + 1]))
    return names[0] if names else None

"""``{{...}}`` templates of a ``.http`` document -> literals and engine placeholders.

Each ``{{expr}}`` is resolved once, at compile time, by the first source that knows its
first name: a request of the document (-> ``{name.path}`` placeholder plus an implicit
dependency), a ``@variable`` (its value, itself expanded), an input field (-> ``{name}``),
a notebook variable (its value), an environment variable (its value). ``{{$secret N}}``
becomes ``{$secrets.N}``; the value never enters the endpoint.

Text around placeholders is escaped for the engine (``{`` -> ``{{``, ``}`` -> ``}}``),
because `apiorch_nb._template` reads single braces as placeholders.
"""

from __future__ import annotations

import difflib
import enum
import json
import random
import re
import time
import uuid
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote_plus

from ._httpfile_model import HttpDocument
from .errors import CellSyntaxError

TEMPLATE = re.compile(r"\{\{([^{}\n]*)\}\}")
_SEGMENT = re.compile(r"[\w-]+")
_PATH_STEP = re.compile(
    r"\.([^.\[\]]+)|\[\s*(-?\d+)\s*\]|\[\s*'([^']*)'\s*\]|\[\s*\"([^\"]*)\"\s*\]"
)
_ENV_NAME = re.compile(r"[A-Za-z_]\w*")
_SYSTEM = ("$secret", "$processEnv", "$env", "$guid", "$timestamp", "$randomInt")
_TIME_UNITS = {"y": 365 * 86400, "M": 30 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600}
_TIME_UNITS.update({"m": 60, "s": 1, "ms": 0.001})


class Kind(enum.Enum):
    TEXT = "text"  # written in the document at this spot
    VALUE = "value"  # substituted from a variable, the namespace, the environment or $system
    PLACEHOLDER = "placeholder"  # an engine path, filled at run time


class Piece(NamedTuple):
    kind: Kind
    text: str


#: Where a template stands: line, column in that line, width of the ``{{...}}``.
Site = tuple[int, int, int]


def escape(text: str) -> str:
    """`text` as literal engine-template text."""
    return text.replace("{", "{{").replace("}", "}}")


def engine_text(pieces: list[Piece], *, decode: bool = False) -> str:
    """Pieces joined into one engine template; `decode` percent-decodes the written text."""
    out: list[str] = []
    for kind, text in pieces:
        if kind is Kind.PLACEHOLDER:
            out.append("{" + text + "}")
        else:
            out.append(escape(unquote_plus(text) if decode and kind is Kind.TEXT else text))
    return "".join(out)


class Resolver:
    """Resolves the templates of one document, request by request.

    `begin(name)` starts a request; afterwards `deps` holds the requests its templates
    referenced (each with the site of its first reference) and `secret_names` grows with
    every ``{{$secret N}}`` seen.
    """

    def __init__(
        self,
        doc: HttpDocument,
        *,
        namespace: Mapping[str, Any],
        environ: Mapping[str, str],
        input_keys: Collection[str],
    ) -> None:
        self.doc = doc
        self.namespace = namespace
        self.environ = environ
        self.input_keys = frozenset(input_keys)
        self.request_names = [r.name for r in doc.requests]
        self.secret_names: set[str] = set()
        self.deps: dict[str, Site] = {}
        self._current: str | None = None
        self._stack: list[str] = []  # @variables being expanded, outermost first
        self._use_site: Site | None = None

    def begin(self, request: str) -> None:
        self._current = request
        self.deps = {}

    def expand(self, text: str, line: int, column: int) -> list[Piece]:
        """`text` (found at `line`/`column`) as pieces.

        Raises:
            CellSyntaxError: a template that no source resolves, caret under it.
        """
        pieces: list[Piece] = []
        pos = 0
        for match in TEMPLATE.finditer(text):
            if match.start() > pos:
                pieces.append(Piece(Kind.TEXT, text[pos : match.start()]))
            site = (line, column + match.start(), match.end() - match.start())
            pieces.extend(self._resolve(match.group(1).strip(), site))
            pos = match.end()
        if pos < len(text):
            pieces.append(Piece(Kind.TEXT, text[pos:]))
        return pieces

    def check_variable_cycles(self) -> None:
        """Refuse ``@a = {{b}}`` / ``@b = {{a}}`` even if neither is used.

        Raises:
            CellSyntaxError: naming the line whose reference closes the cycle.
        """
        variables = self.doc.variables
        requests = set(self.request_names)
        refs: dict[str, list[tuple[str, Site]]] = {}
        for name, var in variables.items():
            column = _value_column(self.doc.source(var.line), var.value)
            refs[name] = [
                (head, (var.line, column + m.start(), m.end() - m.start()))
                for m in TEMPLATE.finditer(var.value)
                if (head := m.group(1).strip().split(".")[0]) in variables and head not in requests
            ]
        done: set[str] = set()

        def visit(name: str, path: list[str]) -> None:
            for ref, site in refs[name]:
                if ref in path:
                    cycle = " -> ".join([*path[path.index(ref) :], ref])
                    raise self._error(f"variable cycle: {cycle}", site)
                if ref not in done:
                    visit(ref, [*path, ref])
            done.add(name)

        for name in variables:
            if name not in done:
                visit(name, [name])

    # -- resolution, in the documented order ---------------------------------------

    def _resolve(self, expr: str, site: Site) -> list[Piece]:
        if not expr:
            raise self._error("empty template {{}}", site)
        if expr.startswith("$"):
            return self._system(expr, site)
        head, dot, rest = expr.partition(".")
        if head in self.request_names:
            return [Piece(Kind.PLACEHOLDER, self._request_path(head, rest, site))]
        if head in self.doc.variables:
            return self._variable(head, rest, site)
        if head in self.input_keys:
            return [Piece(Kind.PLACEHOLDER, self._placeholder_path(head, dot + rest, site))]
        if head in self.namespace:
            value = self.namespace[head]
            for step in self._steps(dot + rest, site):
                value = self._step(value, step, expr, site)
            return [Piece(Kind.VALUE, self._format(value, expr, site))]
        if expr in self.environ:
            return [Piece(Kind.VALUE, self.environ[expr])]
        raise self._unresolved(expr, head, site)

    def _request_path(self, head: str, rest: str, site: Site) -> str:
        if head == self._current:
            raise self._error(f"request {head!r} can't use its own response", site)
        first, _, tail = rest.partition(".")
        example = f"{{{{{head}.response.body.$.field}}}}"
        if first == "request":
            raise self._error(f"parts of a request can't be referenced; use {example}", site)
        if first == "response":
            part, _, sub = tail.partition(".")
            if part == "headers":
                raise self._error(
                    f"response headers can't be referenced, only the response body: {example}",
                    site,
                )
            if part != "body":
                raise self._error(f"expected {{{{{head}.response.body…}}}}, e.g. {example}", site)
            if sub in ("", "$", "*"):
                path = head
            elif sub.startswith("$"):
                path = self._placeholder_path(head, sub[1:], site)
            else:
                if sub.startswith("/"):
                    raise self._error(f"XPath is not supported; use JSONPath: {example}", site)
                raise self._error(f"only JSONPath ($.a.b[0]) works after .body: {example}", site)
        else:
            path = self._placeholder_path(head, "." + rest if rest else "", site)
        if not self._stack:
            self._use_site = site
        self.deps.setdefault(head, self._use_site or site)
        return path

    def _variable(self, name: str, rest: str, site: Site) -> list[Piece]:
        if rest:
            raise self._error(f"@{name} is a text variable; it has no field {rest!r}", site)
        if name in self._stack:  # check_variable_cycles normally catches this first
            raise self._error(f"variable cycle: {' -> '.join([*self._stack, name])}", site)
        var = self.doc.variables[name]
        if not self._stack:
            self._use_site = site
        self._stack.append(name)
        try:
            pieces = self.expand(
                var.value, var.line, _value_column(self.doc.source(var.line), var.value)
            )
        finally:
            self._stack.pop()
        return [Piece(Kind.VALUE, p.text) if p.kind is Kind.TEXT else p for p in pieces]

    def _system(self, expr: str, site: Site) -> list[Piece]:
        name, *args = expr.split()
        if name == "$secret":
            if len(args) != 1 or _ENV_NAME.fullmatch(args[0]) is None:
                raise self._error("expected {{$secret NAME}} with one NAME like API_TOKEN", site)
            self.secret_names.add(args[0])
            return [Piece(Kind.PLACEHOLDER, f"$secrets.{args[0]}")]
        if name in ("$processEnv", "$env"):
            if len(args) != 1:
                raise self._error(f"expected {{{{{name} NAME}}}}", site)
            if args[0] not in self.environ:
                raise self._error(f"environment variable {args[0]} is not set", site)
            return [Piece(Kind.VALUE, self.environ[args[0]])]
        if name == "$guid" and not args:
            return [Piece(Kind.VALUE, str(uuid.uuid4()))]
        if name == "$timestamp":
            return [Piece(Kind.VALUE, self._timestamp(args, site))]
        if name == "$randomInt":
            try:
                low, high = (int(a) for a in args)
            except ValueError:
                raise self._error("expected {{$randomInt MIN MAX}} with integers", site) from None
            if high <= low:
                raise self._error("$randomInt needs MIN < MAX (MAX is excluded)", site)
            return [Piece(Kind.VALUE, str(random.randrange(low, high)))]
        raise self._error(f"unknown system variable {name} (supported: {', '.join(_SYSTEM)})", site)

    def _timestamp(self, args: list[str], site: Site) -> str:
        now = time.time()
        if not args:
            return str(int(now))
        if len(args) == 2 and args[1] in _TIME_UNITS:
            try:
                return str(int(now + int(args[0]) * _TIME_UNITS[args[1]]))
            except ValueError:
                pass
        units = " ".join(_TIME_UNITS)
        raise self._error(f"expected {{{{$timestamp [OFFSET UNIT]}}}}, UNIT one of {units}", site)

    # -- helpers -------------------------------------------------------------------

    def _steps(self, text: str, site: Site) -> list[str]:
        """``.a[0]['b']`` -> ``["a", "0", "b"]``."""
        steps: list[str] = []
        pos = 0
        while pos < len(text):
            match = _PATH_STEP.match(text, pos)
            if match is None:
                raise self._error(
                    f"can't read the path {text!r}; write fields as .name and items as [0]", site
                )
            steps.append(next(g for g in match.groups() if g is not None))
            pos = match.end()
        return steps

    def _step(self, value: Any, step: str, expr: str, site: Site) -> Any:
        """One step into a notebook variable: key, list index or public attribute."""
        if isinstance(value, Mapping) and step in value:
            return value[step]
        if isinstance(value, (list, tuple)) and step.lstrip("-").isdigit():
            index = int(step)
            if -len(value) <= index < len(value):
                return value[index]
        elif not isinstance(value, Mapping) and not step.startswith("_") and hasattr(value, step):
            return getattr(value, step)
        raise self._error(f"notebook variable path {expr}: no field or item {step!r}", site)

    def _placeholder_path(self, head: str, text: str, site: Site) -> str:
        steps = self._steps(text, site)
        for step in steps:
            if _SEGMENT.fullmatch(step) is None:
                raise self._error(
                    f"field {step!r} can't be referenced (letters, digits, _ and - only)", site
                )
        return ".".join([head, *steps])

    def _format(self, value: Any, expr: str, site: Site) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool) or value is None or isinstance(value, (dict, list, tuple)):
            try:
                return json.dumps(value, ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                raise self._error(f"{expr} can't be written as JSON ({exc})", site) from None
        if isinstance(value, (int, float)):
            return str(value)
        raise self._error(
            f"{expr} is a {type(value).__name__}; a template takes str, int, float, bool, "
            "None, dict, list or tuple",
            site,
        )

    def _unresolved(self, expr: str, head: str, site: Site) -> CellSyntaxError:
        known = [
            *self.request_names,
            *self.doc.variables,
            *self.input_keys,
            *(k for k in self.namespace if isinstance(k, str) and not k.startswith("_")),
        ]
        close = difflib.get_close_matches(head, known, n=1, cutoff=0.75)
        hint = f"; did you mean {{{{{close[0]}}}}}?" if close else ""
        return self._error(
            f"{{{{{expr}}}}} is not a request in this cell, a @variable, an input field, "
            f"a notebook variable or an environment variable{hint}",
            site,
        )

    def _error(self, message: str, site: Site) -> CellSyntaxError:
        line, column, width = site
        return self.doc.error(message, line, column=column, width=width)


def _value_column(raw: str, value: str) -> int:
    """Where `value` (the stripped tail of `raw`) starts in `raw`."""
    return len(raw.rstrip()) - len(value)

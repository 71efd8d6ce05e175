"""The parsed and compiled forms of a ``.http`` document (see `apiorch_nb.httpfile`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .endpoint import APIEndpoint
from .errors import CellSyntaxError


@dataclass(frozen=True)
class HttpVariable:
    """``@name = value``: `value` as written (it may hold ``{{...}}``), on source line `line`."""

    value: str
    line: int


@dataclass(frozen=True)
class Annotation:
    """``# @key value`` above a request: `value` as written (may be empty), on `line`."""

    value: str
    line: int


@dataclass(frozen=True)
class SourceLine:
    """One line of source text (a query continuation line) and where it stands."""

    text: str
    line: int


@dataclass
class HttpRequest:
    """One request of a ``.http`` document, everything still in source (``{{...}}``) form.

    `line` is the request line (``METHOD URL``); `name_line` is where the name came from
    (the ``# @name`` annotation, the ``### Title`` or the request line). `header_lines`
    runs parallel to `headers`; `body_line` is the body's first line.
    """

    name: str
    method: str
    url: str
    query_lines: list[SourceLine]
    headers: list[tuple[str, str]]
    body: str | None
    annotations: dict[str, Annotation]
    line: int
    title: str | None = None
    header_lines: list[int] = field(default_factory=list)
    body_line: int | None = None
    name_line: int = 0


@dataclass
class HttpDocument:
    """A parsed ``.http`` text: its ``@variables`` and its requests, in source order.

    `lines` is the raw text split into lines and `first_line` the number of its first
    line, so every error can quote its line the way the user numbers it.
    """

    variables: dict[str, HttpVariable]
    requests: list[HttpRequest]
    lines: tuple[str, ...] = ()
    first_line: int = 1

    def source(self, line: int) -> str:
        """The raw text of source line `line` ("" outside the document)."""
        index = line - self.first_line
        return self.lines[index] if 0 <= index < len(self.lines) else ""

    def error(
        self, message: str, line: int, *, column: int = 0, width: int | None = None
    ) -> CellSyntaxError:
        """A `CellSyntaxError` quoting `line`, with a caret from `column` (default: all of it)."""
        source = self.source(line)
        if width is None:
            width = max(1, len(source.rstrip()) - column)
        return CellSyntaxError(message, line=line, source=source, column=column, width=width)


@dataclass
class CompiledHttp:
    """What `compile_http` made of a document.

    `secret_names` are the ``{{$secret NAME}}`` names the endpoints reference as
    ``{$secrets.NAME}`` placeholders: the caller supplies their values at run time; they
    are never written into an endpoint.
    """

    endpoints: list[APIEndpoint]
    secret_names: set[str]
    document: HttpDocument

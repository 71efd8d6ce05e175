"""`.http` text -> `HttpDocument`: syntax only, every template left as written."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from ._httpfile_model import Annotation, HttpDocument, HttpRequest, HttpVariable, SourceLine
from .endpoint import BODY_METHODS

METHODS = frozenset(BODY_METHODS | {"GET", "HEAD", "OPTIONS"})

#: Annotations that become `APIEndpoint` fields (hyphenated spellings are accepted too).
KNOWN_ANNOTATIONS = (
    "name",
    "depends_on",
    "retry",
    "retry_on",
    "timeout",
    "rate_limit",
    "burst",
    "cache",
    "condition",
    "transform_input",
    "transform_output",
    "parser",
    "on_error",
)
#: REST Client / JetBrains annotations that a pasted file may carry; accepted, no effect.
IGNORED_ANNOTATIONS = (
    "no-redirect",
    "no-cookie-jar",
    "no-log",
    "note",
    "prompt",
    "connection-timeout",
)

NAME = re.compile(r"[A-Za-z_][\w-]*")
_SEPARATOR = re.compile(r"^#{3,}(.*)$")
_VARIABLE = re.compile(r"^\s*@([A-Za-z_][\w-]*)\s*=\s*(.*?)\s*$")
_ANNOTATION = re.compile(r"^\s*(?:#|//)\s*@([A-Za-z][\w-]*)(?=\s|=|$)\s*(?:=\s*)?(.*?)\s*$")
_COMMENT = re.compile(r"^\s*(?:#|//)")
_HEADER = re.compile(r"^\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*:\s*(.*?)\s*$")
_HTTP_VERSION = re.compile(r"\s+HTTP/\d+(?:\.\d+)?$", re.IGNORECASE)
_FILE_BODY = re.compile(r"^<(?:@\w*)?\s+\S")


@dataclass
class _Block:
    """The lines between two ``###`` separators."""

    start: int  # index into the document's lines of the block's first line
    lines: list[str]
    title: str | None = None
    title_line: int | None = None
    annotations: dict[str, Annotation] = field(default_factory=dict)


def parse_http(text: str, *, first_line: int = 1) -> HttpDocument:
    """Parse ``.http`` text into variables and requests; templates stay as written.

    Line numbers in the result and in errors count from `first_line` (the notebook passes
    2, because line 1 of the cell is the ``%%orchestrate`` line).

    Raises:
        CellSyntaxError: a line that is not a request line, header, comment, annotation or
            variable where one is expected; an unknown or repeated annotation; a duplicate
            request name or variable; a ``< path`` body.
    """
    lines = tuple(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    doc = HttpDocument(variables={}, requests=[], lines=lines, first_line=first_line)
    names: dict[str, int] = {}
    for block in _blocks(lines):
        request = _parse_block(doc, block, len(doc.requests) + 1)
        if request is None:
            continue
        if request.name in names:
            raise doc.error(
                f"request name {request.name!r} is already used on line {names[request.name]}",
                request.name_line,
            )
        names[request.name] = request.name_line
        doc.requests.append(request)
    return doc


def _blocks(lines: tuple[str, ...]) -> list[_Block]:
    blocks = [_Block(0, [])]
    for index, raw in enumerate(lines):
        match = _SEPARATOR.match(raw)
        if match:
            title = match.group(1).strip() or None
            blocks.append(_Block(index + 1, [], title=title, title_line=index))
        else:
            blocks[-1].lines.append(raw)
    return blocks


def _parse_block(doc: HttpDocument, block: _Block, number: int) -> HttpRequest | None:
    """The block's request (None if it holds only variables and comments)."""
    base = doc.first_line + block.start
    for position, raw in enumerate(block.lines):
        line = base + position
        if not raw.strip():
            continue
        if _ANNOTATION.match(raw):
            _add_annotation(doc, block, raw, line)
        elif _COMMENT.match(raw):
            continue
        elif raw.lstrip().startswith("@"):
            _add_variable(doc, raw, line)
        else:
            return _parse_request(doc, block, position, number)
    if block.annotations:
        key, annotation = next(iter(block.annotations.items()))
        raise doc.error(f"annotation @{key} has no request below it", annotation.line)
    return None


def _add_annotation(doc: HttpDocument, block: _Block, raw: str, line: int) -> None:
    match = _ANNOTATION.match(raw)
    assert match is not None
    key, value = match.group(1), match.group(2)
    column = raw.index("@")
    if key.lower() in IGNORED_ANNOTATIONS:
        block.annotations.setdefault(key.lower(), Annotation(value, line))
        return
    canonical = key.replace("-", "_")
    if canonical not in KNOWN_ANNOTATIONS:
        close = difflib.get_close_matches(
            canonical, KNOWN_ANNOTATIONS + IGNORED_ANNOTATIONS, n=1, cutoff=0.6
        )
        hint = f"; did you mean @{close[0]}?" if close else ""
        known = ", ".join(f"@{k}" for k in KNOWN_ANNOTATIONS)
        raise doc.error(
            f"unknown annotation @{key}{hint} (known: {known})",
            line,
            column=column,
            width=len(key) + 1,
        )
    if canonical in block.annotations:
        first = block.annotations[canonical].line
        raise doc.error(
            f"@{canonical} is given twice for this request (first on line {first})",
            line,
            column=column,
            width=len(key) + 1,
        )
    block.annotations[canonical] = Annotation(value, line)


def _add_variable(doc: HttpDocument, raw: str, line: int) -> None:
    match = _VARIABLE.match(raw)
    if match is None:
        raise doc.error(
            "expected a variable definition `@name = value` (names: letters, digits, _ and -)",
            line,
            column=len(raw) - len(raw.lstrip()),
        )
    name, value = match.groups()
    if name in doc.variables:
        first = doc.variables[name].line
        raise doc.error(f"variable @{name} is already defined on line {first}", line)
    doc.variables[name] = HttpVariable(value, line)


def _parse_request(doc: HttpDocument, block: _Block, start: int, number: int) -> HttpRequest:
    base = doc.first_line + block.start
    line = base + start
    method, url = _request_line(doc, block.lines[start], line)
    request = HttpRequest(
        name="",
        method=method,
        url=url,
        query_lines=[],
        headers=[],
        body=None,
        annotations=dict(block.annotations),
        line=line,
        title=block.title,
    )
    _name_request(doc, request, block, number)
    rest = block.lines[start + 1 :]
    index = 0
    while index < len(rest) and rest[index].lstrip().startswith(("?", "&")):
        request.query_lines.append(SourceLine(rest[index].strip(), line + 1 + index))
        index += 1
    while index < len(rest):
        raw, at = rest[index], line + 1 + index
        index += 1
        if not raw.strip():
            break
        if _ANNOTATION.match(raw):
            raise doc.error(
                f"annotations go above the request line (line {line}), not among the headers",
                at,
            )
        if _COMMENT.match(raw):
            continue
        header = _HEADER.match(raw)
        if header is None:
            hint = (
                "; query lines (?/&) go directly below the request line"
                if raw.lstrip().startswith(("?", "&"))
                else "; leave a blank line between the headers and the body"
            )
            raise doc.error(f"expected a header `Name: value`{hint}", at)
        request.headers.append((header.group(1), header.group(2)))
        request.header_lines.append(at)
    _take_body(doc, request, rest[index:], line + 1 + index)
    return request


def _request_line(doc: HttpDocument, raw: str, line: int) -> tuple[str, str]:
    text = _HTTP_VERSION.sub("", raw.strip())
    column = len(raw) - len(raw.lstrip())
    first, _, rest = text.partition(" ")
    rest = rest.strip()
    if rest and first.upper() in METHODS:
        method, url = first.upper(), rest
    elif rest and first.isalpha() and _looks_like_url(rest):
        raise doc.error(
            f"unknown method {first!r}; use one of {', '.join(sorted(METHODS))}",
            line,
            column=column,
            width=len(first),
        )
    else:
        method, url = "GET", text
    if not _looks_like_url(url):
        raise doc.error(
            "expected a request line `METHOD URL` with an absolute URL "
            "(http://…, https://… or {{variable}}…)",
            line,
            column=raw.index(url),
            width=len(url),
        )
    return method, url


def _looks_like_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://")) or text.startswith("{{")


def _name_request(doc: HttpDocument, request: HttpRequest, block: _Block, number: int) -> None:
    annotation = request.annotations.get("name")
    if annotation is not None:
        if NAME.fullmatch(annotation.value) is None:
            raw = doc.source(annotation.line)
            raise doc.error(
                "@name needs a name made of letters, digits, _ and - "
                f"that starts with a letter or _, got {annotation.value!r}",
                annotation.line,
                column=raw.rfind(annotation.value) if annotation.value else raw.index("@"),
            )
        request.name, request.name_line = annotation.value, annotation.line
    elif block.title and NAME.fullmatch(block.title) and block.title_line is not None:
        request.name, request.name_line = block.title, doc.first_line + block.title_line
    else:
        request.name, request.name_line = f"request_{number}", request.line


def _take_body(doc: HttpDocument, request: HttpRequest, lines: list[str], line: int) -> None:
    while lines and not lines[0].strip():
        lines, line = lines[1:], line + 1
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    if not lines:
        return
    if _FILE_BODY.match(lines[0]):
        raise doc.error(
            "bodies read from a file (`< path`) are not supported; paste the body, "
            "or put it in a notebook variable and write {{variable}}",
            line,
        )
    request.body, request.body_line = "\n".join(lines), line

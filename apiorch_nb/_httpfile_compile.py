"""`HttpDocument` -> `APIEndpoint`s: annotations to fields, templates to engine form."""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from typing import Any

from ._httpfile_annotations import endpoint_fields
from ._httpfile_json import json_body
from ._httpfile_model import CompiledHttp, HttpDocument, HttpRequest
from ._httpfile_templates import Kind, Piece, Resolver, Site, engine_text
from .endpoint import APIEndpoint
from .errors import CellSyntaxError, ConfigError

_JSON = "application/json"
# An engine placeholder (not an escaped brace): the Content-Type is only known at run time.
_PLACEHOLDER_START = re.compile(r"(?<!\{)\{(?!\{)")


def compile_http(
    doc: HttpDocument,
    *,
    namespace: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    input_keys: Collection[str] = (),
) -> CompiledHttp:
    """Turn a parsed document into endpoints the orchestrator runs.

    Templates resolve in this order: a request of `doc`, a ``@variable``, one of
    `input_keys`, a `namespace` entry, an `environ` entry (default `os.environ`). Callable
    annotations (``@condition`` …) name entries of `namespace`; nothing is evaluated.

    Raises:
        CellSyntaxError: an unresolved template, a bad annotation value, an unknown or
            cyclic dependency, or a field the endpoint refuses; the error names the line.
    """
    namespace = {} if namespace is None else namespace
    resolver = Resolver(
        doc,
        namespace=namespace,
        environ=os.environ if environ is None else environ,
        input_keys=input_keys,
    )
    resolver.check_variable_cycles()
    built: list[tuple[HttpRequest, dict[str, Any], dict[str, Site]]] = []
    for request in doc.requests:
        fields, depends = endpoint_fields(doc, request, namespace)
        resolver.begin(request.name)
        fields.update(_parts(doc, request, resolver))
        for name, site in resolver.deps.items():
            depends.setdefault(name, site)
        fields["depends_on"] = list(depends)
        built.append((request, fields, depends))
    _check_cycles(doc, {request.name: depends for request, _, depends in built})
    endpoints = [_endpoint(doc, request, fields) for request, fields, _ in built]
    return CompiledHttp(endpoints, resolver.secret_names, doc)


def _parts(doc: HttpDocument, request: HttpRequest, resolver: Resolver) -> dict[str, Any]:
    """url, params, headers and body of `request` in engine-template form."""
    raw = doc.source(request.line)
    url_pieces = resolver.expand(request.url, request.line, raw.index(request.url))
    url = engine_text(url_pieces)
    if url_pieces[0].kind is not Kind.PLACEHOLDER and not url.lower().startswith(
        ("http://", "https://")
    ):
        shown = url if len(url) <= 60 else url[:57] + "..."
        raise doc.error(
            f"the URL must start with http:// or https:// once variables are filled, got {shown!r}",
            request.line,
            column=raw.index(request.url),
            width=len(request.url),
        )
    headers: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for (name, value), line in zip(request.headers, request.header_lines, strict=True):
        if name.lower() in first_seen:
            raise doc.error(
                f"header {name} is given twice (first on line {first_seen[name.lower()]}); "
                "put the values on one line",
                line,
            )
        first_seen[name.lower()] = line
        header_raw = doc.source(line)
        column = len(header_raw.rstrip()) - len(value)
        headers[name] = engine_text(resolver.expand(value, line, column))
    fields: dict[str, Any] = {
        "method": request.method,
        "url": url,
        "headers": headers,
        "params": _params(doc, request, resolver),
    }
    if request.body is not None and request.body_line is not None:
        fields["body"] = _body(request, resolver, headers)
    return fields


def _params(doc: HttpDocument, request: HttpRequest, resolver: Resolver) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for source in request.query_lines:
        raw = doc.source(source.line)
        column = raw.index(source.text) + 1
        for part in source.text[1:].split("&"):
            if part.strip():
                key, _, value = part.partition("=")
                key_pieces = resolver.expand(key.strip(), source.line, column + _lead(key))
                value_pieces = resolver.expand(
                    value.strip(), source.line, column + len(key) + 1 + _lead(value)
                )
                name = engine_text(key_pieces, decode=True)
                if not name:
                    raise doc.error("a query parameter needs a name", source.line, column=column)
                _add_param(params, name, engine_text(value_pieces, decode=True))
            column += len(part) + 1
    return params


def _lead(text: str) -> int:
    return len(text) - len(text.lstrip())


def _add_param(params: dict[str, Any], name: str, value: str) -> None:
    if name not in params:
        params[name] = value
    elif isinstance(params[name], list):
        params[name].append(value)
    else:
        params[name] = [params[name], value]


def _body(request: HttpRequest, resolver: Resolver, headers: dict[str, str]) -> Any:
    assert request.body is not None and request.body_line is not None
    pieces: list[Piece] = []
    for offset, line_text in enumerate(request.body.split("\n")):
        if offset:
            pieces.append(Piece(Kind.TEXT, "\n"))
        pieces.extend(resolver.expand(line_text, request.body_line + offset, 0))
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    if content_type is not None and "json" in content_type.lower():
        wants_json = True
    elif content_type is None or _PLACEHOLDER_START.search(content_type):
        wants_json = request.body.lstrip().startswith(("{", "["))
    else:
        wants_json = False
    if wants_json:
        ok, body = json_body(pieces)
        if ok:
            if content_type is None:
                headers["Content-Type"] = _JSON
            return body
    return engine_text(pieces)


def _check_cycles(doc: HttpDocument, edges: dict[str, dict[str, Site]]) -> None:
    """Refuse a dependency cycle, naming the line of the reference that closes it."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        for dep, (line, column, width) in edges[name].items():
            if dep in path:
                cycle = " -> ".join([*path[path.index(dep) :], dep])
                raise doc.error(f"dependency cycle: {cycle}", line, column=column, width=width)
            if dep not in done:
                visit(dep, [*path, dep])
        done.add(name)

    for name in edges:
        if name not in done:
            visit(name, [name])


def _endpoint(doc: HttpDocument, request: HttpRequest, fields: dict[str, Any]) -> APIEndpoint:
    try:
        return APIEndpoint(name=request.name, **fields)
    except CellSyntaxError:
        raise
    except ConfigError as exc:
        raise doc.error(str(exc), request.line) from None

"""The ``.http`` file convention (VS Code REST Client / JetBrains HTTP Client) <-> endpoints.

This is the language of ``%%orchestrate`` cells and of ``%orchestrate -f requests.http``,
so a user can paste an existing ``.http`` file. It is pure Python: the notebook layer
calls it, the engine never does.

::

    @base = http://127.0.0.1:8765

    ### Log in
    # @name login
    POST {{base}}/auth
    Content-Type: application/json

    {"username": "{{username}}"}

    ###
    # @name user
    # @retry 3 0.5s
    # @rate_limit 10/min
    GET {{base}}/users/{{user_id}}
        ?verbose=true
    Authorization: Bearer {{login.response.body.$.token}}

The pieces:

* ``###`` (anything after it is a title) separates requests. Before the request line go
  comments (``#`` / ``//``), ``# @key value`` annotations and ``@name = value`` variables;
  then ``METHOD URL [HTTP/1.1]`` (no method means GET), ``?``/``&`` query lines, headers
  up to a blank line, and the body up to the next ``###``. A JSON body (JSON
  Content-Type, or none and the text starts with ``{``/``[``) becomes a dict or list and
  gets ``Content-Type: application/json`` if it had none.
* A request is named by ``# @name``, else by a one-word ``### title``, else
  ``request_<n>``.
* Annotations map to `APIEndpoint` fields: ``@depends_on``, ``@retry N [DELAY]``,
  ``@retry_on``, ``@timeout``, ``@rate_limit N/UNIT``, ``@burst``, ``@cache``, and by
  name from the notebook: ``@condition``, ``@transform_input``, ``@transform_output``,
  ``@parser``, ``@on_error``. Hyphenated spellings (``@depends-on``) work too. REST
  Client's ``@no-redirect``, ``@no-cookie-jar``, ``@no-log``, ``@note``, ``@prompt`` and
  ``@connection-timeout`` are accepted and have no effect.
* ``{{...}}`` templates resolve at compile time, first match wins: a request in the
  document (``{{login.response.body.$.token}}`` or ``{{login.token}}``; becomes a run-time
  placeholder and an implicit ``depends_on``), a ``@variable``, an input field, a notebook
  variable, an environment variable. ``{{$secret NAME}}`` becomes a ``{$secrets.NAME}``
  placeholder whose value the caller supplies at run time; ``{{$processEnv NAME}}``,
  ``{{$guid}}``, ``{{$timestamp}}`` and ``{{$randomInt MIN MAX}}`` are filled in.

Every error is a `CellSyntaxError` that names the line and shows it with a caret.

Details worth knowing:

* ``NAME.response`` and ``NAME.request`` are REST Client syntax, so a JSON field called
  ``response`` is reached as ``{{NAME.response.body.$.response}}``. JSONPath is limited to
  ``.field``, ``[0]`` and ``['field']``.
* A reference that fills a whole JSON value (``"{{login.id}}"`` or ``{{login.id}}``) keeps
  the referenced value's type at run time, as the engine does for any lone placeholder.
* Substituted values (variables, notebook values, environment) are taken as values: not
  percent-decoded in query lines, JSON-escaped inside JSON strings. Written query text
  is percent-decoded (``+`` is a space) and re-encoded when sent.
* A repeated query key becomes a list; a repeated header is an error. Blank lines around
  a body are dropped. A body that should be JSON but does not parse is sent as text.
* ``to_http`` writes every annotation that differs from the defaults, all of
  ``depends_on`` (implicit ones too), and ``Content-Type: application/json`` for dict and
  list bodies; a secret-named header, query parameter or JSON field holding a literal
  value is written as ``{{$secret NAME}}``. Parameters come back as strings.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from ._httpfile_compile import compile_http
from ._httpfile_export import to_http
from ._httpfile_model import (
    Annotation,
    CompiledHttp,
    HttpDocument,
    HttpRequest,
    HttpVariable,
    SourceLine,
)
from ._httpfile_parse import parse_http

__all__ = [
    "Annotation",
    "CompiledHttp",
    "HttpDocument",
    "HttpRequest",
    "HttpVariable",
    "SourceLine",
    "compile_http",
    "load_http",
    "parse_http",
    "to_http",
]


def load_http(
    text_or_path: str | Path,
    *,
    namespace: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    input_keys: Collection[str] = (),
) -> CompiledHttp:
    """Parse and compile a ``.http`` file or text in one step.

    A `Path`, or a str ending in ``.http`` / ``.rest`` that names an existing file, is
    read as UTF-8; any other str is the text itself.

    Example::

        compiled = load_http("requests.http", namespace=globals())
        config = APIOrchestrationConfig(endpoints=compiled.endpoints, mode="hybrid")

    Raises:
        CellSyntaxError: see `parse_http` and `compile_http`.
        OSError: a `Path` that can't be read; FileNotFoundError also for a str that can
            only be a file name (one word ending in ``.http``/``.rest``, not a URL).
    """
    if isinstance(text_or_path, Path):
        text = text_or_path.read_text(encoding="utf-8")
    elif _names_a_file(text_or_path.strip()):
        text = Path(text_or_path.strip()).read_text(encoding="utf-8")
    else:
        text = text_or_path
    return compile_http(
        parse_http(text), namespace=namespace, environ=environ, input_keys=input_keys
    )


def _names_a_file(text: str) -> bool:
    if "\n" in text or not text.endswith((".http", ".rest")):
        return False
    if Path(text).is_file():
        return True
    if not any(c.isspace() for c in text) and not text.lower().startswith(("http:", "https:")):
        raise FileNotFoundError(f"no such .http file: {text}")
    return False

"""`APIEndpoint`s -> ``.http`` text, the inverse of parse + compile.

An export must never carry a credential: a secret-named header, query parameter or JSON
field whose value is written out (not a reference to another request or a secret) becomes
``{{$secret NAME}}``, and URL user info likewise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, fields
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from ._httpfile_annotations import CALLABLE_FIELDS
from ._httpfile_parse import NAME
from ._redact import is_secret_name
from .endpoint import APIEndpoint
from .errors import ConfigError

# An engine template's tokens: escaped braces, a secret, a placeholder.
_ENGINE = re.compile(r"\{\{|\}\}|\{\$secrets\.([A-Za-z_]\w*)\}|\{([A-Za-z_][\w-]*(?:\.[\w-]+)*)\}")
_USERINFO = re.compile(r"^(https?://)([^/@?#]+)@", re.IGNORECASE)
_URL_QUERY_PARAM = re.compile(r"([?&])([^=&#]+)=([^&#]*)")
_SCHEME_WORD = re.compile(r"[A-Za-z]*")
_TEMPLATES_ONLY = re.compile(r"(?:\{\{[^{}\n]*\}\})+")
_QUERY_SAFE = "/:@!$'()*,;~"
_JSON = "application/json"


def to_http(endpoints: Sequence[APIEndpoint], *, variables: Mapping[str, str] | None = None) -> str:
    """Write `endpoints` as a ``.http`` document that compiles back to the same endpoints.

    Engine placeholders ``{x.y}`` become ``{{x.y}}`` and ``{$secrets.N}`` becomes
    ``{{$secret N}}``. Every field that differs from `APIEndpoint`'s default gets its
    annotation; a callable is written by its ``__name__`` (the notebook must define it
    under that name), a lambda as a comment saying it can't be exported. `variables` are
    written as ``@name = value`` lines, and a URL that starts with one's value starts with
    ``{{name}}`` instead.

    Raises:
        ConfigError: a value ``.http`` can't express (literal ``{{`` text, a newline in a
            URL or header, a body that is not text or JSON).
    """
    variables = dict(variables or {})
    out = [f"@{name} = {value}" for name, value in variables.items()]
    for ep in endpoints:
        if out:
            out.append("")
        out.extend(_request(ep, variables))
    return "\n".join(out) + "\n"


def _request(ep: APIEndpoint, variables: Mapping[str, str]) -> list[str]:
    where = f"endpoint {ep.name!r}"
    if NAME.fullmatch(ep.name) is None:
        raise ConfigError(
            f"{where}: a .http request name is letters, digits, _ and - (starting with a "
            "letter or _), so this endpoint can't be exported"
        )
    lines = [f"### {ep.name}", f"# @name {ep.name}", *_annotations(ep)]
    url = _secret_url(_source(ep.url, where, "url"))
    for name, value in sorted(variables.items(), key=lambda kv: -len(kv[1])):
        if value and url.startswith(value):
            url = "{{" + name + "}}" + url[len(value) :]
            break
    _one_line(url, where, "url")
    lines.append(f"{ep.method} {url}")
    for index, (key, value) in enumerate(_param_pairs(ep.params)):
        text = _query(value, where, f"params.{key}")
        if is_secret_name(key) and not _only_references(value):
            text = _secret(key)
        mark = "?" if index == 0 and "?" not in url else "&"
        lines.append(f"    {mark}{_query(key, where, 'params')}={text}")
    headers = {str(k): str(v) for k, v in ep.headers.items()}
    if isinstance(ep.body, (dict, list)) and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = _JSON
    for name, value in headers.items():
        if is_secret_name(name) and not _only_references(value):
            text = _secret(name)
        else:
            text = _source(value, where, f"headers.{name}")
        _one_line(f"{name}: {text}", where, f"headers.{name}")
        lines.append(f"{name}: {text}")
    body = _body(ep.body, where)
    if body is not None:
        lines.extend(["", body])
    return lines


def _one_line(text: str, where: str, field: str) -> None:
    if "\n" in text or "\r" in text:
        raise ConfigError(f"{where}: {field} holds a line break, which .http can't express")


def _annotations(ep: APIEndpoint) -> list[str]:
    default = {f.name: f.default for f in fields(APIEndpoint) if f.default is not MISSING}
    lines: list[str] = []
    if ep.depends_on:
        lines.append(f"# @depends_on {', '.join(ep.depends_on)}")
    if (ep.retry_count, ep.retry_delay) != (default["retry_count"], default["retry_delay"]):
        delay = f" {_seconds(ep.retry_delay)}" if ep.retry_delay != default["retry_delay"] else ""
        lines.append(f"# @retry {ep.retry_count}{delay}")
    if set(ep.retry_on) != set(default["retry_on"]):
        statuses = ", ".join(str(s) for s in sorted(ep.retry_on)) or "off"
        lines.append(f"# @retry_on {statuses}")
    if ep.timeout != default["timeout"]:
        lines.append(f"# @timeout {_seconds(ep.timeout)}")
    if ep.rate_limit is not None:
        window = f"/{_seconds(ep.rate_limit_window)}" if ep.rate_limit_window is not None else ""
        lines.append(f"# @rate_limit {ep.rate_limit}{window}")
    if ep.burst_limit is not None:
        lines.append(f"# @burst {ep.burst_limit}")
    if ep.cache_ttl is not None:
        lines.append(f"# @cache {_seconds(ep.cache_ttl) if ep.cache_ttl else 'off'}")
    by_field = {field: key for key, field in CALLABLE_FIELDS.items()}
    for field, key in by_field.items():
        func = getattr(ep, field)
        if func is not None:
            lines.append(_callable_line(key, func))
    return lines


def _callable_line(key: str, func: Callable[..., Any]) -> str:
    name = getattr(func, "__name__", None)
    if isinstance(name, str) and name.isidentifier():
        return f"# @{key} {name}"
    shown = name if isinstance(name, str) else type(func).__name__
    return f"# @{key}: {shown} (not exportable)"


def _seconds(value: float) -> str:
    number = float(value)
    if number.is_integer():
        return f"{int(number)}s"
    return f"{Decimal(repr(number)):f}s"  # never an exponent, which @timeout can't read


def _source(text: str, where: str, field: str) -> str:
    """An engine template as ``.http`` source text."""
    out: list[str] = []
    literal: list[str] = []

    def flush() -> None:
        run = "".join(literal)
        if "{{" in run:
            raise ConfigError(
                f"{where}: {field} holds the literal text '{{{{', which .http can't express"
            )
        out.append(run)
        literal.clear()

    pos = 0
    for match in _ENGINE.finditer(text):
        literal.append(text[pos : match.start()])
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
        else:
            flush()
            secret, path = match.groups()
            out.append("{{$secret " + secret + "}}" if secret else "{{" + path + "}}")
        pos = match.end()
    literal.append(text[pos:])
    flush()
    return "".join(out)


def _only_references(value: Any) -> bool:
    """True if `value` is placeholders plus at most an auth scheme word (``Bearer {x}``)."""
    placeholders = 0

    def drop(match: re.Match[str]) -> str:
        nonlocal placeholders
        if match.group(0) in ("{{", "}}"):
            return match.group(0)[0]
        placeholders += 1
        return ""

    rest = _ENGINE.sub(drop, str(value))
    return placeholders > 0 and _SCHEME_WORD.fullmatch(rest.strip()) is not None


def _secret(name: str) -> str:
    return "{{$secret " + (re.sub(r"\W+", "_", name).strip("_").upper() or "SECRET") + "}}"


def _secret_url(url: str) -> str:
    def userinfo(match: re.Match[str]) -> str:
        if _TEMPLATES_ONLY.fullmatch(match.group(2).replace(":", "")):
            return match.group(0)
        return match.group(1) + _secret("url_userinfo") + "@"

    def param(match: re.Match[str]) -> str:
        sep, key, value = match.groups()
        if is_secret_name(key) and not _TEMPLATES_ONLY.fullmatch(value):
            return f"{sep}{key}={_secret(key)}"
        return match.group(0)

    url = _USERINFO.sub(userinfo, url)
    head, sep, query = url.partition("?")
    return head + _URL_QUERY_PARAM.sub(param, sep + query) if sep else url


def _param_pairs(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is None:
                continue
            pairs.append(
                (
                    str(key),
                    ("true" if item else "false") if item is True or item is False else str(item),
                )
            )
    return pairs


def _query(text: str, where: str, field: str) -> str:
    """An engine template as a query key or value: literal parts percent-encoded."""
    source = _source(text, where, field)
    parts = re.split(r"(\{\{[^{}\n]*\}\})", source)
    return "".join(p if i % 2 else quote(p, safe=_QUERY_SAFE) for i, p in enumerate(parts))


def _body(body: Any, where: str) -> str | None:
    if body is None:
        return None
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: a binary body can't be written to .http") from None
    if isinstance(body, str):
        text = _source(body, where, "body")
        if re.search(r"^#{3,}", text, re.MULTILINE):
            raise ConfigError(f"{where}: body has a line starting with ###, which ends a request")
        return text
    try:
        converted = _json_source(body, where, "body")
        return json.dumps(converted, indent=2, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: body can't be written as JSON ({exc})") from None


def _json_source(value: Any, where: str, field: str) -> Any:
    if isinstance(value, str):
        return _source(value, where, field)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = _source(str(key), where, field)
            if (
                is_secret_name(str(key))
                and isinstance(item, (str, int, float))
                and not isinstance(item, bool)
                and not (isinstance(item, str) and _only_references(item))
            ):
                out[name] = _secret(str(key))
            else:
                out[name] = _json_source(item, where, f"{field}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_json_source(v, where, field) for v in value]
    return value

"""The one place that knows what a secret is.

Reprs, logs, run records and (later) DataFrames and exports all pass headers, params and
URLs through here, so a new secret-looking name is taught once and hidden everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[REDACTED]"

# Matched anywhere in a header or parameter name, case-insensitively.
_SECRET_NAME = re.compile(
    r"auth|cookie|token|secret|passw|api[-_]?key|apikey|x-key|session|credential|signature"
    r"|private[-_]?key|access[-_]?key|client[-_]?key",
    re.IGNORECASE,
)


def is_secret_name(name: str) -> bool:
    """True if a header, parameter or field with this name must never be shown."""
    return bool(_SECRET_NAME.search(name))


def redact_mapping(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of `values` with every secret-named entry replaced by ``[REDACTED]``."""
    if not values:
        return {}
    return {k: (REDACTED if is_secret_name(str(k)) else v) for k, v in values.items()}


def redact_url(url: str) -> str:
    """`url` with user info and secret-named query parameters hidden."""
    if "@" not in url and "?" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if is_secret_name(k) else v) for k, v in pairs], safe="[]")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub_values(text: str, values: Iterable[str]) -> str:
    """`text` with each of `values` (secrets known by value, not by name) replaced."""
    for value in values:
        if value and value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_data(value: Any, secret_values: Iterable[str] = ()) -> Any:
    """`value` (a body, a result) as a display may show it: secret-named keys hidden at any
    depth of dicts, lists and tuples, and known secret values scrubbed from its strings."""
    values = tuple(secret_values)
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if is_secret_name(str(k)) else redact_data(v, values))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_data(v, values) for v in value]
    if isinstance(value, str) and values:
        return scrub_values(value, values)
    return value

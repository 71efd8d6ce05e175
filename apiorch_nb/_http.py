"""The aiohttp transport: sends one request, reads it fully, translates aiohttp's errors.

This is the only module that catches aiohttp exceptions; everything past it sees the
`errors` hierarchy and a fully read `Response`.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from .errors import CallTimeout, ConfigError, ResponseParseError, TransportError


class Response:
    """A fully read HTTP response, safe to cache and to hand to ``response_parser``.

    ``json()`` and ``text()`` are plain methods (not coroutines) because the body has
    already been read, which lets ``response_parser=lambda r: r.json()["data"]`` work.
    """

    __slots__ = ("_content_type", "_json", "_url", "body", "headers", "method", "status")

    def __init__(
        self,
        status: int,
        headers: CIMultiDictProxy[str] | CIMultiDict[str],
        body: bytes,
        url: object,
        method: str = "GET",
        content_type: str | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self._url = url  # the final URL (a yarl.URL or str), turned into text when asked
        self.method = method
        self._content_type = content_type
        self._json: Any = _UNPARSED

    @property
    def url(self) -> str:
        return str(self._url)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        if self._content_type is None:
            raw = self.headers.get("Content-Type", "")
            self._content_type = raw.split(";", 1)[0].strip().lower()
        return self._content_type

    def text(self, encoding: str | None = None) -> str:
        return self.body.decode(encoding or _charset(self.headers) or "utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON (cached after the first call)."""
        if self._json is _UNPARSED:
            try:
                self._json = _loads(self.body) if self.body else None
            except ValueError as exc:
                raise ResponseParseError("", f"response body is not valid JSON: {exc}") from exc
        return self._json

    def parsed(self) -> Any:
        """JSON for JSON responses (``application/json``, ``...+json``), else text; None
        for an empty body. Written flat: it runs once for every response."""
        body = self.body
        if not body:
            return None
        kind = self._content_type
        if kind is None:
            kind = self.content_type
        if not kind.endswith("json"):
            return self.text()
        if self._json is _UNPARSED:
            try:
                try:
                    text = body.decode("utf-8")  # see _loads
                except UnicodeDecodeError:
                    self._json = json.loads(body)
                else:
                    self._json = json.loads(text)
            except ValueError as exc:
                raise ResponseParseError("", f"response body is not valid JSON: {exc}") from exc
        return self._json

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.method} {self.url} {len(self.body)} bytes>"


_UNPARSED = object()


def _loads(body: bytes) -> Any:
    """JSON from bytes: UTF-8 per RFC 8259 (decoding first skips json's Python-level
    encoding sniffing); anything else is left to json's UTF-16/32 detection."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return json.loads(body)
    return json.loads(text)


def _charset(headers: Mapping[str, str]) -> str | None:
    for part in headers.get("Content-Type", "").split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"') or None
    return None


def encode_params(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Query parameters as aiohttp accepts them: no None, booleans as true/false, lists expanded."""
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if v is None:
                continue
            out.append((str(key), ("true" if v else "false") if isinstance(v, bool) else str(v)))
    return out


@functools.lru_cache(maxsize=64)
def _client_timeout(total: float) -> aiohttp.ClientTimeout:
    """One (immutable) timeout object per distinct endpoint timeout, not one per request."""
    return aiohttp.ClientTimeout(total=total)


def new_session() -> aiohttp.ClientSession:
    """One session per orchestrator and loop; our scheduler bounds concurrency, not aiohttp."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
        raise_for_status=False,
        auto_decompress=True,
    )
    # aiohttp silently re-sends an idempotent request once when a kept-alive connection
    # turns out dead. Our retry policy already decides about retries, and every request
    # must count against the rate limit, so turn the hidden one off (aiohttp#10790).
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session


async def send(
    session: aiohttp.ClientSession,
    endpoint: str,
    method: str,
    url: str,
    *,
    params: Mapping[str, Any] | None,
    headers: Mapping[str, str] | None,
    body: Any,
    timeout: float,
) -> Response:
    """Send one request and read the whole response.

    Raises:
        TransportError: no HTTP answer (refused, reset, broken payload, redirect loop).
        CallTimeout: `timeout` seconds passed before the response was fully read.
        ConfigError: the URL or body cannot be sent at all.
    """
    kwargs: dict[str, Any] = {}
    if body is not None:
        if isinstance(body, (bytes, bytearray, str)):
            kwargs["data"] = body
        else:
            kwargs["json"] = body
    try:
        async with session.request(
            method,
            url,
            params=encode_params(params) if params else None,
            headers=headers or None,
            timeout=_client_timeout(timeout),
            **kwargs,
        ) as resp:
            data = await resp.read()
            return Response(resp.status, resp.headers, data, resp.url, method)
    except asyncio.TimeoutError as exc:  # aiohttp's ServerTimeoutError is one too
        raise CallTimeout(endpoint, f"no complete response within {timeout:g}s") from exc
    except aiohttp.InvalidURL as exc:
        raise ConfigError(f"endpoint {endpoint!r}: invalid URL {url!r}") from exc
    except aiohttp.ClientConnectorError as exc:
        raise TransportError(
            endpoint, f"cannot connect to {exc.host}:{exc.port} ({exc.os_error})"
        ) from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise TransportError(endpoint, "server closed the connection without a response") from exc
    except aiohttp.TooManyRedirects as exc:
        raise TransportError(endpoint, "too many redirects") from exc
    except aiohttp.ClientPayloadError as exc:
        raise TransportError(endpoint, f"broken response body ({exc})") from exc
    except aiohttp.ClientResponseError as exc:
        raise TransportError(endpoint, f"bad response ({exc.message})") from exc
    except aiohttp.ClientError as exc:
        raise TransportError(endpoint, f"{type(exc).__name__}: {exc}") from exc
    except (TypeError, ValueError) as exc:  # e.g. a body json.dumps cannot encode
        raise ConfigError(f"endpoint {endpoint!r}: cannot build the request: {exc}") from exc

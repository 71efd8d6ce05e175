"""Every error apiorch_nb raises, in one tree.

::

    OrchestrationError
    ├── ConfigError (ValueError)          a bad endpoint/config field; names field and value
    │   ├── TemplateError (KeyError)      a `{placeholder}` that nothing in the run fills
    │   └── CellSyntaxError               a bad .http / %%orchestrate text; names the line
    ├── CallError                         one call gave up; .endpoint, .attempts
    │   ├── TransportError                connect/reset/DNS/payload, translated from aiohttp
    │   ├── CallTimeout (TimeoutError)    the endpoint's own `timeout` ran out
    │   ├── HTTPStatusError               non-2xx after retries; .status, .body
    │   └── ResponseParseError            malformed body, or response_parser raised
    ├── CircuitOpenError                  refused without calling: the endpoint's breaker is open
    ├── RateLimitTimeout (TimeoutError)   a limiter wait gave up at its `timeout`
    ├── RunAborted                        the run stopped early; .results and .run are partial
    │   ├── FailFastError                 fail_fast and an unrescued failure; .endpoint, .cause
    │   ├── ErrorThresholdExceeded        the share of unrescued failures passed error_threshold
    │   └── OrchestrationTimeout (TimeoutError)   total_timeout ran out
    └── MapTimeout (TimeoutError)         a `map`'s timeout ran out; .map_run keeps every row

Errors keep their facts as attributes and build the message from them, so the notebook
layer can show one readable line and tests can assert on fields instead of strings.
aiohttp's own exceptions are translated in ``_http.py`` only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .enrich import MapRun
    from .run import Run

__all__ = [
    "CallError",
    "CallTimeout",
    "CellSyntaxError",
    "CircuitOpenError",
    "ConfigError",
    "ErrorThresholdExceeded",
    "FailFastError",
    "HTTPStatusError",
    "MapTimeout",
    "OrchestrationError",
    "OrchestrationTimeout",
    "RateLimitTimeout",
    "ResponseParseError",
    "RunAborted",
    "TemplateError",
    "TransportError",
]


class OrchestrationError(Exception):
    """Root of every error apiorch_nb raises on purpose."""


class ConfigError(OrchestrationError, ValueError):
    """A configuration value that can never work; raised at construction, before any I/O."""


class TemplateError(ConfigError, KeyError):
    """A ``{placeholder}`` in an endpoint that neither the input nor earlier results fill."""

    def __init__(self, endpoint: str, placeholder: str, field: str, *, why: str = "") -> None:
        self.endpoint = endpoint
        self.placeholder = placeholder
        self.field = field
        super().__init__(
            f"endpoint {endpoint!r}: placeholder {{{placeholder}}} in {field} "
            + (why or "is not filled by the input data or by an earlier endpoint's result")
        )

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class CellSyntaxError(ConfigError):
    """A line of a ``.http`` file or ``%%orchestrate`` cell that cannot be understood.

    The message names the line and shows it with a caret under the offending part, so the
    notebook can print it as is.
    """

    def __init__(
        self, message: str, *, line: int, source: str = "", column: int = 0, width: int = 1
    ) -> None:
        self.line = line
        self.source = source
        self.column = column
        self.problem = message
        text = f"line {line}: {message}"
        if source:
            text += f"\n    {source}\n    {' ' * column}{'^' * max(1, width)}"
        super().__init__(text)


class CallError(OrchestrationError):
    """One endpoint call failed for good (after its retries)."""

    def __init__(self, endpoint: str, message: str, *, attempts: int = 1) -> None:
        self.endpoint = endpoint
        self.attempts = attempts
        self.reason = message
        super().__init__(f"endpoint {endpoint!r}: {message}")


class TransportError(CallError):
    """The request never got an HTTP answer: refused, reset, DNS, broken payload."""


class CallTimeout(CallError, TimeoutError):
    """The endpoint's ``timeout`` ran out before the response was read."""


class HTTPStatusError(CallError):
    """The server answered with a non-2xx status and retries (if any) did not help."""

    def __init__(self, endpoint: str, status: int, body: str = "", *, attempts: int = 1) -> None:
        self.status = status
        self.body = body
        snippet = f": {body[:120]}" if body else ""
        super().__init__(endpoint, f"HTTP {status}{snippet}", attempts=attempts)


class ResponseParseError(CallError):
    """The response arrived but could not be parsed (bad JSON, or the parser raised)."""


class CircuitOpenError(OrchestrationError):
    """The circuit breaker refused the call; nothing was sent."""

    def __init__(self, endpoint: str, retry_in: float) -> None:
        self.endpoint = endpoint
        self.retry_in = retry_in
        super().__init__(
            f"endpoint {endpoint!r}: circuit open, no request sent (half-open in {retry_in:.1f}s)"
        )


class RateLimitTimeout(OrchestrationError, TimeoutError):
    """A rate-limiter wait was given a ``timeout`` and capacity did not free in time."""

    def __init__(self, category: str, timeout: float) -> None:
        self.category = category
        self.timeout = timeout
        super().__init__(f"rate limit {category!r}: no capacity within {timeout}s")


class RunAborted(OrchestrationError):
    """The run stopped before every endpoint finished.

    ``results`` holds what finished (same shape as ``execute``'s dict) and ``run`` the full
    record, with the calls that were stopped marked cancelled.
    """

    def __init__(self, message: str, *, results: dict[str, Any], run: Run | None = None) -> None:
        self.results = results
        self.run = run
        super().__init__(message)


class FailFastError(RunAborted):
    """``fail_fast`` is on and an endpoint failed without an error_handler to rescue it."""

    def __init__(
        self,
        endpoint: str,
        cause: BaseException,
        *,
        results: dict[str, Any],
        run: Run | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.cause = cause
        super().__init__(
            f"fail_fast: endpoint {endpoint!r} failed ({_reason(cause)}); the rest was cancelled",
            results=results,
            run=run,
        )


class ErrorThresholdExceeded(RunAborted):
    """The share of unrescued failures in the run passed ``error_threshold``."""

    def __init__(
        self,
        failed: list[str],
        total: int,
        threshold: float,
        *,
        results: dict[str, Any],
        run: Run | None = None,
    ) -> None:
        self.failed = failed
        self.total = total
        self.threshold = threshold
        super().__init__(
            f"error_threshold {threshold:g} exceeded: {len(failed)} of {total} endpoints failed "
            f"({', '.join(failed)}); the rest was cancelled",
            results=results,
            run=run,
        )


class OrchestrationTimeout(RunAborted, TimeoutError):
    """``total_timeout`` ran out; what was still running was cancelled."""

    def __init__(
        self,
        total_timeout: float,
        pending: list[str],
        *,
        results: dict[str, Any],
        run: Run | None = None,
    ) -> None:
        self.total_timeout = total_timeout
        self.pending = pending
        super().__init__(
            f"total_timeout of {total_timeout:g}s ran out; cancelled: {', '.join(pending)}",
            results=results,
            run=run,
        )


class MapTimeout(OrchestrationError, TimeoutError):
    """``map(..., timeout=...)`` ran out: running rows were cancelled, the rest not started.

    ``map_run`` is the full record (``map_run.frame()`` has every row, finished or not).
    """

    def __init__(self, timeout: float, map_run: MapRun) -> None:
        self.timeout = timeout
        self.map_run = map_run
        counts = map_run.counts()
        super().__init__(
            f"map timeout of {timeout:g}s ran out after {map_run.done - counts['cancelled']} "
            f"of {len(map_run)} rows; {counts['cancelled']} cancelled, "
            f"{counts['pending']} not started"
        )


def _reason(exc: BaseException) -> str:
    """The short cause of a failure, without repeating the endpoint name."""
    return getattr(exc, "reason", None) or str(exc) or type(exc).__name__

"""A call's outcome: its response parsed into a result, or its failure recorded.

User callables (``response_parser``, ``transform_output``, ``error_handler`` and the
others) are called here and in the runner through `call_user`, so an exception in user
code always becomes an error that names the endpoint and the callable.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from . import _http
from ._call import CallRecord, CallState
from .endpoint import APIEndpoint
from .errors import CallError, CircuitOpenError, ConfigError, ResponseParseError


def error_record(exc: BaseException) -> dict[str, Any]:
    """The result of a failed, unrescued endpoint: ``{"error": ..., "status": ...}``."""
    return {"error": str(exc), "status": getattr(exc, "status", None)}


def parse_response(ep: APIEndpoint, response: _http.Response) -> Any:
    """response_parser (or JSON/text by content type), then transform_output.

    Synchronous on the common path; when a user callable is async, a coroutine is
    returned for the caller to await.
    """
    try:
        value = ep.response_parser(response) if ep.response_parser else response.parsed()
    except ResponseParseError as exc:
        raise ResponseParseError(ep.name, exc.reason) from exc
    except Exception as exc:
        raise ResponseParseError(
            ep.name, f"response_parser raised {type(exc).__name__}: {exc}"
        ) from exc
    if ep.response_parser is not None and inspect.isawaitable(value):
        return _finish_parse(ep, value)
    if ep.transform_output is None:
        return value
    value = call_user(ep, "transform_output", ep.transform_output, value)
    return _awaited(value) if inspect.isawaitable(value) else value


async def _finish_parse(ep: APIEndpoint, pending: Any) -> Any:
    try:
        value = await pending
    except Exception as exc:
        raise ResponseParseError(
            ep.name, f"response_parser raised {type(exc).__name__}: {exc}"
        ) from exc
    if ep.transform_output is not None:
        value = call_user(ep, "transform_output", ep.transform_output, value)
        if inspect.isawaitable(value):
            value = await value
    return value


async def _awaited(value: Any) -> Any:
    return await value


async def fail_call(
    ep: APIEndpoint, record: CallRecord, exc: Exception, hide: Callable[[str], str] | None
) -> None:
    """Record a failure; let the endpoint's error_handler turn it into a result if it can.

    Configuration errors are never rescued: they are bugs in the run, not API failures.
    """
    if hide is not None:
        _hide_in_exception(exc, hide)
    record.error = exc
    record.reason = getattr(exc, "reason", None) or str(exc)
    record.result = error_record(exc)
    if ep.error_handler is not None and not isinstance(exc, ConfigError):
        try:
            value = ep.error_handler(exc)
            if inspect.isawaitable(value):
                value = await value
        except Exception as handler_exc:
            record.error = CallError(
                ep.name,
                f"error_handler raised {type(handler_exc).__name__}: {handler_exc} "
                f"while handling: {record.reason}",
            )
            record.error.__cause__ = handler_exc
        else:
            record.result = value
            record.rescued = True
    state = CallState.CIRCUIT_OPEN if isinstance(exc, CircuitOpenError) else CallState.FAILED
    record.to(state)


def _hide_in_exception(exc: Exception, hide: Callable[[str], str]) -> None:
    """Scrub secret values from an error's message before anything can display it."""
    exc.args = tuple(hide(a) if isinstance(a, str) else a for a in exc.args)
    for attr in ("reason", "body"):
        value = getattr(exc, attr, None)
        if isinstance(value, str):
            setattr(exc, attr, hide(value))


def call_user(ep: APIEndpoint, what: str, func: Callable[[Any], Any], arg: Any) -> Any:
    """Call a user callable; its exception becomes a CallError naming endpoint and callable."""
    try:
        return func(arg)
    except (CallError, ConfigError):
        raise
    except Exception as exc:
        raise CallError(ep.name, f"{what} raised {type(exc).__name__}: {exc}") from exc

"""Runs one endpoint's call to a terminal state: cache, breaker, attempts, parsing, rescue.

The runner never raises for a failed call; it writes the outcome into the `CallRecord` and
returns. Only `CancelledError` escapes, after the record says ``cancelled`` and every
resource it held (concurrency slot, rate-limit permit, breaker probe, single-flight lead)
has been given back.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from types import CoroutineType
from typing import Any

import aiohttp

from . import _http
from ._call import (
    BACKING_OFF,
    CACHED,
    CANCELLED,
    IN_FLIGHT,
    OK,
    QUEUED,
    RATE_LIMITED,
    SKIPPED,
    Attempt,
    CallRecord,
)
from ._call_outcome import call_user, fail_call, parse_response
from ._plan import Node
from ._redact import redact_mapping, redact_url, scrub_values
from ._template import Context, render
from .breaker import BreakerOutcome, BreakerStore, CircuitBreaker
from .cache import Cache, SingleFlight, default_cache_key
from .endpoint import BODY_METHODS, APIEndpoint
from .errors import (
    CallError,
    CallTimeout,
    ConfigError,
    HTTPStatusError,
    TransportError,
)
from .ratelimit import Limiter
from .retry import AttemptOutcome, RetryPolicy

logger = logging.getLogger("apiorch_nb")
_monotonic = time.monotonic

_CACHEABLE_METHODS = frozenset({"GET", "HEAD"})


@dataclass
class Services:
    """What every call of one orchestrator shares, across runs."""

    limiter: Limiter
    categories: dict[str, tuple[str, ...]]  # endpoint name -> limiter categories
    breakers: dict[str, CircuitBreaker]
    policies: dict[str, RetryPolicy]
    cache: Cache | None = None
    cache_ttls: dict[str, float] = field(default_factory=dict)  # endpoint name -> seconds
    cache_key_generator: Callable[[APIEndpoint], Any] | None = None
    #: Shared breaker state (Redis); None keeps each breaker in this process.
    breaker_store: BreakerStore | None = None
    log_requests: bool = False
    log_responses: bool = False
    session: aiohttp.ClientSession | None = None
    singleflight: SingleFlight = field(default_factory=SingleFlight)
    #: Values templates reach as ``{$secrets.NAME}``; never stored or logged in clear.
    secrets: dict[str, str] = field(default_factory=dict)
    #: Requests of endpoints whose request never changes (see `Node.static`), built once.
    static_requests: dict[str, Request] = field(default_factory=dict)

    def hide(self, text: str) -> str:
        """`text` with every secret value replaced by ``[REDACTED]``."""
        return scrub_values(text, self.secrets.values()) if self.secrets else text


@dataclass(slots=True)
class Request:
    method: str
    url: str
    params: Mapping[str, Any]
    headers: Mapping[str, str]
    body: Any


async def run_call(
    node: Node,
    record: CallRecord,
    svc: Services,
    *,
    input: Any,
    results: Mapping[str, Any],
    run_input: Any,
    slots: asyncio.Semaphore,
    deadline: float | None,
    finish: Callable[[Node, CallRecord, Any], None],
) -> None:
    """Run `node`'s call to a terminal state, then ``finish(node, record, output)``.

    `output` is what a PIPELINE successor receives as input. `finish` is called in this
    task (not in a done callback) so the scheduler can stop the run before a call woken by
    the slot this one frees gets to send; it is not called when the call is cancelled.
    """
    ep = node.endpoint
    try:
        if ep.condition is not None and not call_user(
            ep, "condition", ep.condition, Context(input, results, run_input)
        ):
            record.reason = "condition is false"
            record.to(SKIPPED)
            finish(node, record, input)  # a skipped pipeline step passes its input on
            return
        shaped = (
            call_user(ep, "transform_input", ep.transform_input, input)
            if ep.transform_input is not None
            else input
        )
        request = svc.static_requests.get(node.name) if node.static else None
        if request is None:
            request = build_request(node, shaped, results, run_input, svc.secrets)
            if node.static:  # nothing in it depends on the run: build it once
                svc.static_requests[node.name] = request
        if node.templated_parts:
            record.url = svc.hide(redact_url(request.url))
        ttl = svc.cache_ttls.get(ep.name) if svc.cache is not None else None
        if ttl and request.method in _CACHEABLE_METHODS:
            await _fetch_cached(node, record, svc, request, slots, deadline, ttl)
        else:
            response = await _send(ep, record, svc, request, slots, deadline)
            result = parse_response(ep, response)
            record.result = await result if isinstance(result, CoroutineType) else result
            record.to(OK)
    except asyncio.CancelledError:
        if not record.state.terminal:
            record.to(CANCELLED)
        raise
    except Exception as exc:
        await fail_call(ep, record, exc, svc.hide if svc.secrets else None)
    finish(node, record, record.result)


def build_request(
    node: Node,
    shaped: Any,
    results: Mapping[str, Any],
    run_input: Any,
    secrets: Mapping[str, str] | None = None,
) -> Request:
    """Fill the endpoint's templates; a body-carrying method without ``body`` sends its input.

    Only the parts that hold placeholders are rendered: a map row with a templated URL
    reuses the endpoint's own params, headers and body.

    Raises:
        TemplateError: a placeholder nothing fills.
        ConfigError: the filled URL is not http(s).
    """
    ep = node.endpoint
    url, params, headers, body = ep.url, ep.params, ep.headers, ep.body
    parts = node.templated_parts
    if parts:
        ctx = Context(shaped, results, run_input, {"$secrets": secrets} if secrets else None)
        if "url" in parts:
            url = render(url, ctx, ep.name, "url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ConfigError(
                    f"endpoint {ep.name!r}: url must be http(s) after templating, got {url!r}"
                )
        if "params" in parts:
            params = render(params, ctx, ep.name, "params")
        if "headers" in parts:
            rendered = render(headers, ctx, ep.name, "headers")
            headers = {str(k): str(v) for k, v in rendered.items()}
        if "body" in parts:
            body = render(body, ctx, ep.name, "body")
    if body is None and ep.method in BODY_METHODS and shaped is not None:
        body = shaped
    return Request(ep.method, url, params, headers, body)


async def _fetch_cached(
    node: Node,
    record: CallRecord,
    svc: Services,
    request: Request,
    slots: asyncio.Semaphore,
    deadline: float | None,
    ttl: float,
) -> None:
    """Answer from the cache, or fetch once for all identical concurrent misses.

    A response is cached only once it has parsed, so a malformed 2xx is never served from
    the cache; followers of a leader whose response did not parse fetch on their own. The
    backend's get and set may return awaitables (Redis); a `Response` is never one, so the
    in-memory hit pays one isinstance check.
    """
    ep = node.endpoint
    assert svc.cache is not None
    key = _cache_key(node, svc, request)
    while True:
        cached = svc.cache.get(ep.name, key)
        if (
            cached is not None
            and not isinstance(cached, _http.Response)
            and inspect.isawaitable(cached)
        ):
            cached = await cached
        if cached is not None:
            result = parse_response(ep, cached)
            record.result = await result if isinstance(result, CoroutineType) else result
            record.to(CACHED)
            return
        leader = svc.singleflight.claim(ep.name, key)
        if leader is not None:
            await leader  # the leader stores a cacheable response, or we try ourselves
            continue
        stored: _http.Response | None = None
        try:
            response = await _send(ep, record, svc, request, slots, deadline)
            result = parse_response(ep, response)
            record.result = await result if isinstance(result, CoroutineType) else result
            pending = svc.cache.set(ep.name, key, response, ttl)
            if pending is not None and inspect.isawaitable(pending):
                await pending
            stored = response
            record.to(OK)
            return
        finally:
            svc.singleflight.finish(ep.name, key, stored)


def _cache_key(node: Node, svc: Services, request: Request) -> Hashable:
    if svc.cache_key_generator is None:
        return default_cache_key(
            request.method, request.url, request.params, request.headers, request.body
        )
    ep = node.endpoint
    if node.templated_parts:  # the generator sees the endpoint as it is being sent
        ep = replace(
            ep,
            url=request.url,
            params=dict(request.params),
            headers=dict(request.headers),
            body=request.body,
        )
    key = svc.cache_key_generator(ep)
    return key if isinstance(key, Hashable) else repr(key)


async def _send(
    ep: APIEndpoint,
    record: CallRecord,
    svc: Services,
    request: Request,
    slots: asyncio.Semaphore,
    deadline: float | None,
) -> _http.Response:
    """Send until a 2xx, a non-retryable failure, or no retries left; tell the breaker.

    Each attempt takes a concurrency slot, then a rate-limit permit (settled when the
    response arrives), then sends. Backing off happens outside the slot.
    """
    breaker = svc.breakers[ep.name]
    store = svc.breaker_store
    breaker_state = breaker.before_call() if store is None else await store.before_call(breaker)
    categories = svc.categories.get(ep.name)
    session = svc.session
    assert session is not None
    try:
        while True:
            attempt = record.to(QUEUED)
            assert attempt is not None
            attempt.breaker_state = breaker_state if attempt.number == 1 else breaker.state
            response: _http.Response | None = None
            error: CallError | None = None
            async with slots:
                permit = None
                if categories:
                    record.to(RATE_LIMITED)
                    permit = await svc.limiter.acquire_permit(categories)
                record.to(IN_FLIGHT)
                if svc.log_requests:
                    _log_request(ep, request, svc)
                try:
                    response = await _http.send(
                        session,
                        ep.name,
                        request.method,
                        request.url,
                        params=request.params,
                        headers=request.headers,
                        body=request.body,
                        timeout=ep.timeout,
                    )
                except (TransportError, CallTimeout) as exc:
                    error = exc
                finally:
                    if permit is not None:
                        permit.settle()
            if response is not None:
                attempt.status = response.status
                attempt.bytes = len(response.body)
                if svc.log_responses:
                    _log_response(ep, response, _monotonic() - (attempt.sent_at or 0.0), svc)
                if 200 <= response.status < 300:
                    if store is None:
                        breaker.record_success()
                    else:
                        await store.record(breaker, "success")
                    return response
            error = _attempt_error(ep, svc, attempt, response, error)
            delay = _retry_delay(svc.policies[ep.name], attempt, response, deadline)
            if delay is None:
                raise error
            record.to(BACKING_OFF)
            await asyncio.sleep(delay)
    except BaseException as exc:
        outcome = _breaker_outcome(exc)
        if store is None:
            breaker.record(outcome)
        else:  # "ignored" never suspends (BreakerStore.record), so a cancel goes on at once
            await store.record(breaker, outcome)
        raise


def _attempt_error(
    ep: APIEndpoint,
    svc: Services,
    attempt: Attempt,
    response: _http.Response | None,
    error: CallError | None,
) -> CallError:
    """The error this failed attempt stands for, noted on the attempt."""
    if response is not None:
        error = HTTPStatusError(
            ep.name,
            response.status,
            response.body[:500].decode("utf-8", "replace"),
            attempts=attempt.number,
        )
    assert error is not None
    error.attempts = attempt.number
    attempt.error = svc.hide(error.reason)
    return error


def _retry_delay(
    policy: RetryPolicy,
    attempt: Attempt,
    response: _http.Response | None,
    deadline: float | None,
) -> float | None:
    """Seconds to back off before the next attempt, or None to give up."""
    decision = policy.decide(
        AttemptOutcome(
            attempt=attempt.number,
            status=response.status if response is not None else None,
            transport_error=response is None,
            retry_after=response.headers.get("Retry-After") if response is not None else None,
            now=asyncio.get_running_loop().time(),  # the deadline's clock
            deadline=deadline,
        )
    )
    return decision.delay if decision.retry else None


def _breaker_outcome(exc: BaseException) -> BreakerOutcome:
    """What a call that ended in `exc` tells its breaker, once, after its retries.

    5xx, 429, transport errors and timeouts count against it; any other 4xx means the
    service answered, so it counts as healthy; a cancelled call says nothing either way.
    """
    if isinstance(exc, (TransportError, CallTimeout)):
        return "failure"
    if isinstance(exc, HTTPStatusError):
        return "failure" if exc.status >= 500 or exc.status == 429 else "success"
    return "ignored"


def _log_request(ep: APIEndpoint, request: Request, svc: Services) -> None:
    logger.info(
        svc.hide(
            f"→ {ep.name} {request.method} {redact_url(request.url)} "
            f"params={redact_mapping(request.params)} headers={redact_mapping(request.headers)}"
        )
    )


def _log_response(
    ep: APIEndpoint, response: _http.Response, elapsed_s: float, svc: Services
) -> None:
    logger.info(
        svc.hide(
            f"← {ep.name} {response.status} {redact_url(response.url)} "
            f"{len(response.body)} bytes in {elapsed_s * 1000:.1f} ms"
        )
    )

"""The demo API's routes: deterministic data, a payment pipeline, and fault knobs.

Every response is computed from the path and query (no randomness), so tests and
tutorials can assert exact values. Mutable state (flaky counters, limiter windows,
violations, down services) lives in `DemoState`, which the server resets between tests.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._state import CURRENT_RECORD, DemoState

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler, Middleware

_CHUNK = bytes(range(256)) * 256  # 64 KiB, a recognisable repeating pattern
_MAX_BYTES = 1 << 31
_MAX_HUGE_MB = 256.0
_NO_BODY_STATUSES = frozenset({204, 205, 304})


class _BadParam(ValueError):
    """A path or query value the route cannot use; answered with 400."""


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


def _not_found(request: web.Request) -> web.Response:
    return _json({"error": "not found", "path": request.path}, status=404)


def _stopping() -> web.Response:
    return _json({"error": "server stopping"}, status=503)


def _number(raw: str, name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise _BadParam(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise _BadParam(f"{name} must be finite, got {raw!r}")
    return value


def _int_query(request: web.Request, name: str, default: int, *, minimum: int = 0) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadParam(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise _BadParam(f"{name} must be >= {minimum}, got {value}")
    return value


def _positive_id(raw: str) -> int | None:
    if raw.isascii() and raw.isdigit() and int(raw) > 0:
        return int(raw)
    return None


async def _json_body(request: web.Request) -> Any:
    """The parsed JSON body, None when empty; 400 when it is not JSON."""
    raw = await request.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise _BadParam("body is not valid JSON") from None


async def _object_body(request: web.Request) -> dict[str, Any]:
    body = await _json_body(request)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise _BadParam("body must be a JSON object")
    return body


# -- deterministic data ---------------------------------------------------------


def _user(uid: int) -> dict[str, Any]:
    return {
        "id": uid,
        "name": f"User {uid}",
        "email": f"user{uid}@example.com",
        "user_type": "premium" if uid % 2 == 1 else "basic",
    }


def _posts(uid: int) -> list[dict[str, Any]]:
    return [
        {"id": uid * 10 + k, "user_id": uid, "title": f"Post {k} by user {uid}"} for k in (1, 2, 3)
    ]


# -- example API ------------------------------------------------------------------


async def users(request: web.Request) -> web.Response:
    limit = min(_int_query(request, "limit", 10), 1000)
    return _json({"users": [_user(i) for i in range(1, limit + 1)], "count": limit})


async def user_by_id(request: web.Request) -> web.Response:
    uid = _positive_id(request.match_info["id"])
    if uid is None:
        return _json({"error": "not found"}, status=404)
    return _json(_user(uid))


async def user_posts(request: web.Request) -> web.Response:
    uid = _positive_id(request.match_info["id"])
    if uid is None:
        return _json({"error": "not found"}, status=404)
    return _json({"posts": _posts(uid)})


async def posts(request: web.Request) -> web.Response:
    raw = request.query.get("user_id")
    if raw is None:
        return _json({"posts": [p for uid in (1, 2, 3) for p in _posts(uid)]})
    uid = _positive_id(raw)
    return _json({"posts": _posts(uid) if uid is not None else []})


async def analytics(request: web.Request) -> web.Response:
    uid = _positive_id(request.match_info["id"])
    if uid is None:
        return _json({"error": "not found"}, status=404)
    return _json({"user_id": uid, "page_views": 100 + uid * 37 % 900, "sessions": 1 + uid * 7 % 50})


async def auth(request: web.Request) -> web.Response:
    body = await _json_body(request)
    username = body.get("username") if isinstance(body, dict) else None
    username = str(username or request.query.get("username") or "anonymous")
    return _json({"token": f"demo-token-{username}", "username": username})


async def current_user(request: web.Request) -> web.Response:
    # The username comes from a demo token when one is sent; no token is required.
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    username = token.removeprefix("demo-token-") if token.startswith("demo-token-") else "anonymous"
    return _json({"id": 1, "username": username})


async def profile(request: web.Request) -> web.Response:
    return _json({"user_id": 1, "bio": "Demo user who likes well-behaved APIs.", "plan": "premium"})


async def enrich(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if body is None:
        body = {}
    elif not isinstance(body, dict):
        body = {"data": body}
    return _json({**body, "enriched": True})


async def payment_validate(request: web.Request) -> web.Response:
    body = await _object_body(request)
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        return _json({"error": "amount is required and must be a number"}, status=422)
    if amount <= 0:
        return _json({"error": f"amount must be > 0, got {amount}"}, status=422)
    return _json({"valid": True, **body})


async def fraud_check(request: web.Request) -> web.Response:
    return _json({"approved": True, "risk_score": 0.1, **await _object_body(request)})


async def processor_charge(request: web.Request) -> web.Response:
    body = await _object_body(request)
    txn = f"txn-{CURRENT_RECORD.get().seq}"
    return _json({"charged": True, "transaction_id": txn, **body})


async def notify_payment(request: web.Request) -> web.Response:
    return _json({"notified": True, **await _object_body(request)})


async def health(request: web.Request) -> web.Response:
    service = request.match_info["service"]
    state = request.app[STATE_KEY]
    if service in state.down or request.query.get("status") == "down":
        return _json({"status": "down", "service": service}, status=503)
    return _json({"status": "ok", "service": service})


async def data(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return _json({"source": name, "value": len(name)})


# -- fault knobs ---------------------------------------------------------------------


async def echo(request: web.Request) -> web.Response:
    raw = await request.read()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return _json(
        {
            "method": request.method,
            "path": request.path,
            "query": {k: v for k, v in request.query.items()},
            "headers": {k: v for k, v in request.headers.items()},
            "json": parsed,
            "body": raw.decode("utf-8", errors="replace"),
        }
    )


async def delay(request: web.Request) -> web.Response:
    ms = _number(request.match_info["ms"], "ms")
    if ms < 0:
        raise _BadParam(f"ms must be >= 0, got {ms}")
    if not await request.app[STATE_KEY].nap(ms / 1000):
        return _stopping()
    return _json({"delayed_ms": int(ms) if ms.is_integer() else ms})


def _status_response(code: int, body: dict[str, Any], retry_after: str | None) -> web.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    if code in _NO_BODY_STATUSES:
        return web.Response(status=code, headers=headers)
    return _json(body, status=code, headers=headers)


def _status_code(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or not 200 <= int(raw) <= 599:
        raise _BadParam(f"status must be an integer in 200..599, got {raw!r}")
    return int(raw)


async def status(request: web.Request) -> web.Response:
    code = _status_code(request.match_info["code"])
    return _status_response(code, {"status": code}, request.query.get("retry_after"))


async def flaky(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    fail = _int_query(request, "fail", 1)
    code = _status_code(request.query.get("status", "503"))
    attempt = request.app[STATE_KEY].flaky_attempt(key)
    if attempt <= fail:
        body = {"key": key, "attempt": attempt, "status": code, "error": "flaky"}
        return _status_response(code, body, request.query.get("retry_after"))
    return _json({"key": key, "attempt": attempt})


async def limited(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    limit = _int_query(request, "limit", 5, minimum=1)
    window = _number(request.query.get("window", "1"), "window")
    if window <= 0:
        raise _BadParam(f"window must be > 0, got {window}")
    violation = request.app[STATE_KEY].admit(CURRENT_RECORD.get(), key, limit, window)
    if violation is None:
        return _json({"key": key, "ok": True})
    body = {"key": key, "ok": False, "error": "rate limited", "retry_after": violation.retry_after}
    return _json(body, status=429, headers={"Retry-After": str(violation.retry_after_header)})


async def hang(request: web.Request) -> web.Response:
    # The handler is cancelled when the client goes away (handler_cancellation);
    # stopping the server wakes it.
    await request.app[STATE_KEY].nap(None)
    return _stopping()


async def reset_connection(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp notices the dead transport while writing and drops this response quietly.
    return web.Response(status=204)


async def malformed(request: web.Request) -> web.Response:
    return web.Response(body=b'{"broken": ', content_type="application/json")


async def stream_bytes(request: web.Request) -> web.StreamResponse:
    raw = request.match_info["n"]
    if not (raw.isascii() and raw.isdigit()) or int(raw) > _MAX_BYTES:
        raise _BadParam(f"n must be an integer in 0..{_MAX_BYTES}, got {raw!r}")
    remaining = int(raw)
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = remaining
    await response.prepare(request)
    while remaining > 0:
        chunk = _CHUNK[: min(remaining, len(_CHUNK))]
        await response.write(chunk)
        remaining -= len(chunk)
    await response.write_eof()
    return response


async def huge(request: web.Request) -> web.Response:
    mb = _number(request.query.get("mb", "1"), "mb")
    if not 0 < mb <= _MAX_HUGE_MB:
        raise _BadParam(f"mb must be in (0, {_MAX_HUGE_MB:g}], got {mb:g}")
    body = request.app[STATE_KEY].huge_body(mb)
    return web.Response(body=body, content_type="application/json")


# -- the request log over HTTP -----------------------------------------------------------


async def log_get(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return _json(
        {
            "requests": [r.to_dict() for r in state.log.records()],
            "violations": [dataclasses.asdict(v) for v in state.violation_list()],
        }
    )


async def log_delete(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return _json({"reset": True})


STATE_KEY = web.AppKey("apiorch_demo_state", DemoState)

_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/users", users),
    ("GET", "/users/{id}", user_by_id),
    ("GET", "/users/{id}/posts", user_posts),
    ("GET", "/posts", posts),
    ("GET", "/analytics/users/{id}", analytics),
    ("GET", "/auth", auth),
    ("POST", "/auth", auth),
    ("GET", "/user", current_user),
    ("GET", "/profile", profile),
    ("POST", "/enrich", enrich),
    ("POST", "/payment/validate", payment_validate),
    ("POST", "/fraud/check", fraud_check),
    ("POST", "/processor/charge", processor_charge),
    ("POST", "/notify/payment", notify_payment),
    ("GET", "/health/{service}", health),
    ("GET", "/data/{name}", data),
    ("*", "/echo", echo),
    ("*", "/delay/{ms}", delay),
    ("*", "/status/{code}", status),
    ("*", "/flaky/{key}", flaky),
    ("*", "/limited/{key}", limited),
    ("*", "/hang", hang),
    ("*", "/reset", reset_connection),
    ("*", "/malformed", malformed),
    ("*", "/bytes/{n}", stream_bytes),
    ("*", "/huge", huge),
    ("GET", "/_log", log_get),
    ("DELETE", "/_log", log_delete),
]


def _knobs_middleware(state: DemoState) -> Middleware:
    """Add the configured latency, and answer routing and parameter errors as JSON."""

    @web.middleware
    async def knobs(request: web.Request, handler: Handler) -> web.StreamResponse:
        latency_s = state.latency_ms / 1000 if request.path != "/_log" else 0.0
        if latency_s > 0 and not await state.nap(latency_s):
            return _stopping()
        try:
            return await handler(request)
        except _BadParam as exc:
            return _json({"error": str(exc)}, status=400)
        except web.HTTPNotFound:
            return _not_found(request)
        except web.HTTPMethodNotAllowed as exc:
            body = {"error": "method not allowed", "method": request.method, "path": request.path}
            return _json(body, status=405, headers={"Allow": ",".join(sorted(exc.allowed_methods))})

    return knobs


def build_app(state: DemoState, outer: list[Middleware]) -> web.Application:
    """The demo application; `outer` middlewares run first (the server's request log)."""
    state.stopping = False
    app = web.Application(
        middlewares=[*outer, _knobs_middleware(state)],
        client_max_size=64 * 1024 * 1024,
    )
    app[STATE_KEY] = state
    for method, path, handler in _ROUTES:
        if method == "GET":  # like any HTTP server, answer HEAD wherever GET is served
            app.router.add_get(path, handler, allow_head=True)
        else:
            app.router.add_route(method, path, handler)
    return app

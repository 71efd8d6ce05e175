"""The demo API server: run modes, routes, fault knobs, and the request log.

Everything goes over real HTTP on 127.0.0.1. Assertions are about what the server saw
(counts, arrival times, sequence numbers) and what came back (statuses and values).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from apiorch_nb.demo import DemoServer, LimitViolation, LocalRedis, RequestRecord, max_in_window


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def fetch(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """One request; return (status, parsed JSON or None, response)."""
    async with http.request(method, url, **kwargs) as resp:
        raw = await resp.read()
        return resp.status, json.loads(raw) if raw else None, resp


_OTHER_SERVERS: set[int | None] = set()


@pytest.fixture(autouse=True)
def _ignore_servers_started_elsewhere() -> None:
    """The session's shared demo server (conftest) also runs in an apiorch-demo thread."""
    _OTHER_SERVERS.clear()
    _OTHER_SERVERS.update(t.ident for t in threading.enumerate() if t.name == "apiorch-demo")


def demo_threads() -> list[threading.Thread]:
    """Demo-server threads started by this test."""
    return [
        t
        for t in threading.enumerate()
        if t.name == "apiorch-demo" and t.ident not in _OTHER_SERVERS
    ]


# -- run modes ----------------------------------------------------------------------------


async def test_async_mode_serves_on_the_current_loop(http: aiohttp.ClientSession) -> None:
    async with DemoServer() as srv:
        assert srv.url == f"http://127.0.0.1:{srv.port}"
        assert srv.port > 0
        status, body, _ = await fetch(http, "GET", f"{srv.url}/users/1")
        assert status == 200
        assert body["id"] == 1
        assert srv.count("/users/1") == 1
        url = srv.url
    assert not srv.running
    with pytest.raises(aiohttp.ClientConnectionError):
        await fetch(http, "GET", f"{url}/users/1")


def test_thread_mode_start_and_stop_leave_no_thread() -> None:
    srv = DemoServer().start()
    try:
        assert len(demo_threads()) == 1
        with urllib.request.urlopen(f"{srv.url}/data/abc", timeout=5) as resp:
            assert json.loads(resp.read()) == {"source": "abc", "value": 3}
    finally:
        srv.stop()
    assert demo_threads() == []
    assert not srv.running
    srv.stop()  # a second stop is a no-op


def test_sync_context_manager_serves_from_a_thread() -> None:
    with DemoServer() as srv:
        with urllib.request.urlopen(f"{srv.url}/users/2", timeout=5) as resp:
            assert json.loads(resp.read())["user_type"] == "basic"
        assert srv.count() == 1
        assert "mode=thread" in repr(srv)
    assert demo_threads() == []
    assert "stopped" in repr(srv)


def test_server_can_restart_after_stop() -> None:
    srv = DemoServer()
    for _ in range(2):
        with srv, urllib.request.urlopen(f"{srv.url}/profile", timeout=5) as resp:
            assert resp.status == 200
    assert demo_threads() == []


def test_starting_twice_is_refused() -> None:
    with DemoServer() as srv, pytest.raises(RuntimeError, match="already running"):
        srv.start()


def test_busy_port_raises_oserror_and_leaks_no_thread() -> None:
    with DemoServer() as first:
        with pytest.raises(OSError):
            DemoServer(port=first.port).start()
        assert len(demo_threads()) == 1


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "localhost"])
def test_only_loopback_addresses_are_accepted(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        DemoServer(host)


def test_invalid_knobs_are_refused() -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        DemoServer(latency_ms=-1)
    with pytest.raises(ValueError, match="log_limit"):
        DemoServer(log_limit=0)


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        _ = DemoServer().url


def test_thread_stop_is_prompt_with_requests_still_waiting() -> None:
    srv = DemoServer().start()
    outcomes: list[str] = []

    def call(path: str) -> None:
        try:
            urllib.request.urlopen(f"{srv.url}{path}", timeout=30).read()
            outcomes.append("ok")
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            outcomes.append(type(exc).__name__)

    callers = [threading.Thread(target=call, args=(p,)) for p in ("/hang", "/delay/30000")]
    for caller in callers:
        caller.start()
    deadline = time.monotonic() + 5
    while srv.count() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.count() == 2
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 1.0
    for caller in callers:
        caller.join(5)
    assert len(outcomes) == 2
    assert "ok" not in outcomes
    assert demo_threads() == []


async def test_async_stop_wakes_a_hanging_handler(http: aiohttp.ClientSession) -> None:
    async with DemoServer() as srv:
        pending = asyncio.ensure_future(fetch(http, "GET", f"{srv.url}/hang"))
        while srv.count("/hang") == 0:
            await asyncio.sleep(0.01)
        started = asyncio.get_running_loop().time()
    assert asyncio.get_running_loop().time() - started < 1.0
    try:
        status, body, _ = await asyncio.wait_for(pending, 5)
    except aiohttp.ClientConnectionError:
        pass  # the connection closed before the reply was written; also a prompt end
    else:
        assert (status, body) == (503, {"error": "server stopping"})


def test_cli_serves_until_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "apiorch_nb.demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/health/db", timeout=5) as resp:
            assert json.loads(resp.read()) == {"status": "ok", "service": "db"}
        with urllib.request.urlopen(f"{url}/_log", timeout=5) as resp:
            logged = json.loads(resp.read())["requests"]
        assert [r["path"] for r in logged] == ["/health/db"]
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_cli_options_latency_and_no_log() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "apiorch_nb.demo", "--port", "0", "--latency-ms", "80", "--no-log"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        started = time.monotonic()
        with urllib.request.urlopen(f"{url}/data/x", timeout=5) as resp:
            assert resp.status == 200
        assert time.monotonic() - started >= 0.08
        with urllib.request.urlopen(f"{url}/_log", timeout=5) as resp:
            assert json.loads(resp.read())["requests"] == []
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_cli_refuses_a_public_host() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "apiorch_nb.demo", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "loopback" in result.stderr


# -- example data -----------------------------------------------------------------------


async def test_users_list_respects_limit(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    status, body, _ = await fetch(http, "GET", f"{demo.url}/users?limit=3")
    assert status == 200
    assert body["count"] == 3
    assert [u["id"] for u in body["users"]] == [1, 2, 3]
    _, default, _ = await fetch(http, "GET", f"{demo.url}/users")
    assert default["count"] == len(default["users"]) == 10


async def test_user_type_follows_id_parity(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    _, odd, _ = await fetch(http, "GET", f"{demo.url}/users/7")
    _, even, _ = await fetch(http, "GET", f"{demo.url}/users/8")
    assert odd == {
        "id": 7,
        "name": "User 7",
        "email": "user7@example.com",
        "user_type": "premium",
    }
    assert even["user_type"] == "basic"


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "1.5"])
async def test_unknown_user_is_404(demo: DemoServer, http: aiohttp.ClientSession, bad: str) -> None:
    status, body, _ = await fetch(http, "GET", f"{demo.url}/users/{bad}")
    assert (status, body) == (404, {"error": "not found"})


async def test_posts_by_user(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    _, nested, _ = await fetch(http, "GET", f"{demo.url}/users/4/posts")
    _, filtered, _ = await fetch(http, "GET", f"{demo.url}/posts?user_id=4")
    assert nested == filtered
    assert len(nested["posts"]) == 3
    assert {p["user_id"] for p in nested["posts"]} == {4}
    assert set(nested["posts"][0]) == {"id", "user_id", "title"}
    _, everyone, _ = await fetch(http, "GET", f"{demo.url}/posts")
    assert {p["user_id"] for p in everyone["posts"]} == {1, 2, 3}


async def test_analytics_is_deterministic(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    _, first, _ = await fetch(http, "GET", f"{demo.url}/analytics/users/5")
    _, again, _ = await fetch(http, "GET", f"{demo.url}/analytics/users/5")
    assert first == again
    assert first["user_id"] == 5
    assert set(first) == {"user_id", "page_views", "sessions"}


async def test_auth_takes_username_from_body_query_or_default(
    demo: DemoServer, http: aiohttp.ClientSession
) -> None:
    _, from_body, _ = await fetch(http, "POST", f"{demo.url}/auth", json={"username": "ada"})
    _, from_query, _ = await fetch(http, "GET", f"{demo.url}/auth?username=bob")
    _, anonymous, _ = await fetch(http, "GET", f"{demo.url}/auth")
    assert from_body == {"token": "demo-token-ada", "username": "ada"}
    assert from_query["token"] == "demo-token-bob"
    assert anonymous["username"] == "anonymous"


async def test_user_and_profile_follow_auth(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    headers = {"Authorization": "Bearer demo-token-ada"}
    _, user, _ = await fetch(http, "GET", f"{demo.url}/user", headers=headers)
    _, profile, _ = await fetch(http, "GET", f"{demo.url}/profile", headers=headers)
    assert user == {"id": 1, "username": "ada"}
    assert profile["user_id"] == 1
    assert profile["plan"] == "premium"
    assert demo.requests("/user")[0].headers["authorization"] == "Bearer demo-token-ada"


async def test_enrich_echoes_the_body(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    _, body, _ = await fetch(http, "POST", f"{demo.url}/enrich", json={"id": 3, "x": [1]})
    assert body == {"id": 3, "x": [1], "enriched": True}


async def test_payment_pipeline_passes_fields_along(
    demo: DemoServer, http: aiohttp.ClientSession
) -> None:
    order = {"amount": 42.5, "currency": "EUR"}
    _, valid, _ = await fetch(http, "POST", f"{demo.url}/payment/validate", json=order)
    _, fraud, _ = await fetch(http, "POST", f"{demo.url}/fraud/check", json=valid)
    _, charge, _ = await fetch(http, "POST", f"{demo.url}/processor/charge", json=fraud)
    _, notify, _ = await fetch(http, "POST", f"{demo.url}/notify/payment", json=charge)
    assert valid == {"valid": True, **order}
    assert fraud["approved"] is True
    assert fraud["risk_score"] == 0.1
    charge_seq = demo.requests("/processor/charge")[0].seq
    assert charge["transaction_id"] == f"txn-{charge_seq}"
    assert notify == {**charge, "notified": True}
    assert [r.path for r in demo.log] == [
        "/payment/validate",
        "/fraud/check",
        "/processor/charge",
        "/notify/payment",
    ]


@pytest.mark.parametrize("body", [{}, {"amount": 0}, {"amount": -5}, {"amount": "ten"}])
async def test_payment_validate_rejects_bad_amounts(
    demo: DemoServer, http: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    status, reply, _ = await fetch(http, "POST", f"{demo.url}/payment/validate", json=body)
    assert status == 422
    assert "amount" in reply["error"]


async def test_health_reports_down_services(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    status, body, _ = await fetch(http, "GET", f"{demo.url}/health/db")
    assert (status, body) == (200, {"status": "ok", "service": "db"})
    demo.down.add("db")
    status, body, _ = await fetch(http, "GET", f"{demo.url}/health/db")
    assert (status, body) == (503, {"status": "down", "service": "db"})
    status, _, _ = await fetch(http, "GET", f"{demo.url}/health/cache?status=down")
    assert status == 503
    demo.reset()
    status, _, _ = await fetch(http, "GET", f"{demo.url}/health/db")
    assert status == 200


async def test_data_source(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    _, body, _ = await fetch(http, "GET", f"{demo.url}/data/weather")
    assert body == {"source": "weather", "value": 7}


async def test_unknown_path_and_wrong_method(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    status, body, _ = await fetch(http, "GET", f"{demo.url}/no/such/thing")
    assert (status, body) == (404, {"error": "not found", "path": "/no/such/thing"})
    status, body, resp = await fetch(http, "POST", f"{demo.url}/users")
    assert status == 405
    assert "GET" in resp.headers["Allow"]
    assert demo.count() == 2  # failures are logged too


# -- fault knobs -----------------------------------------------------------------------------


async def test_echo_reflects_the_request(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    _, body, _ = await fetch(
        http,
        "PUT",
        f"{demo.url}/echo?a=1&a=2&b=x",
        json={"k": "v"},
        headers={"X-Trace": "t-1"},
    )
    assert body["method"] == "PUT"
    assert body["path"] == "/echo"
    assert body["query"] == {"a": "2", "b": "x"}
    assert body["headers"]["X-Trace"] == "t-1"
    assert body["json"] == {"k": "v"}
    assert json.loads(body["body"]) == {"k": "v"}
    _, raw, _ = await fetch(http, "POST", f"{demo.url}/echo", data=b"not json")
    assert raw["json"] is None
    assert raw["body"] == "not json"


async def test_delay_waits_that_long(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, body, _ = await fetch(http, "GET", f"{demo.url}/delay/150")
    assert loop.time() - started >= 0.15
    assert (status, body) == (200, {"delayed_ms": 150})
    status, _, _ = await fetch(http, "GET", f"{demo.url}/delay/-1")
    assert status == 400


async def test_status_returns_the_code_and_retry_after(
    demo: DemoServer, http: aiohttp.ClientSession
) -> None:
    status, body, resp = await fetch(http, "POST", f"{demo.url}/status/429?retry_after=3")
    assert (status, body) == (429, {"status": 429})
    assert resp.headers["Retry-After"] == "3"
    status, body, resp = await fetch(http, "GET", f"{demo.url}/status/500")
    assert (status, body) == (500, {"status": 500})
    assert "Retry-After" not in resp.headers
    status, body, _ = await fetch(http, "GET", f"{demo.url}/status/204")
    assert (status, body) == (204, None)
    status, _, _ = await fetch(http, "GET", f"{demo.url}/status/99")
    assert status == 400


async def test_latency_applies_after_the_arrival_stamp(
    demo: DemoServer, http: aiohttp.ClientSession
) -> None:
    demo.latency_ms = 100
    loop = asyncio.get_running_loop()
    sent = loop.time()
    status, _, _ = await fetch(http, "GET", f"{demo.url}/data/x")
    received = loop.time()
    assert status == 200
    (record,) = demo.requests("/data/x")
    assert sent <= record.t
    assert received - record.t >= 0.1
    demo.reset()
    assert demo.latency_ms == 0


async def test_flaky_fails_n_times_then_succeeds(
    demo: DemoServer, http: aiohttp.ClientSession
) -> None:
    url = f"{demo.url}/flaky/job?fail=2&status=502&retry_after=1"
    results = [await fetch(http, "GET", url) for _ in range(3)]
    assert [status for status, _, _ in results] == [502, 502, 200]
    assert results[0][2].headers["Retry-After"] == "1"
    assert results[2][1] == {"key": "job", "attempt": 3}
    status, body, _ = await fetch(http, "GET", f"{demo.url}/flaky/other")
    assert (status, body["attempt"]) == (503, 1)  # keys count separately; default fail=1
    assert demo.count("/flaky/job") == 3
    demo.reset()
    status, _, _ = await fetch(http, "GET", url)
    assert status == 502


async def test_limiter_issues_429_with_retry_after(
    demo: DemoServer, http: aiohttp.ClientSession
) -> None:
    url = f"{demo.url}/limited/k?limit=3&window=30"
    results = [await fetch(http, "GET", url) for _ in range(5)]
    assert [s for s, _, _ in results] == [200, 200, 200, 429, 429]
    assert results[0][1] == {"key": "k", "ok": True}
    violations = demo.violations
    assert [type(v) for v in violations] == [LimitViolation, LimitViolation]
    records = demo.requests("/limited/k")
    assert [v.seq for v in violations] == [r.seq for r in records[3:]]
    first = violations[0]
    assert (first.key, first.limit, first.window) == ("k", 3, 30.0)
    # Retry-After is the wait until the oldest admitted request leaves the window.
    assert first.retry_after == pytest.approx(records[0].t + 30 - records[3].t)
    assert results[3][2].headers["Retry-After"] == str(math.ceil(first.retry_after))
    assert first.retry_after_header == math.ceil(first.retry_after)


async def test_limiter_window_slides(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    url = f"{demo.url}/limited/s?limit=1&window=0.5"
    assert (await fetch(http, "GET", url))[0] == 200
    assert (await fetch(http, "GET", url))[0] == 429
    await asyncio.sleep(demo.violations[0].retry_after)
    assert (await fetch(http, "GET", url))[0] == 200
    refused = {v.seq for v in demo.violations}
    admitted = [r.t for r in demo.requests("/limited/s") if r.seq not in refused]
    assert len(admitted) == 2
    assert max_in_window(admitted, 0.5) == 1


async def test_limiter_holds_under_concurrency(
    demo: DemoServer, http: aiohttp.ClientSession
) -> None:
    url = f"{demo.url}/limited/burst?limit=4&window=5"
    results = await asyncio.gather(*(fetch(http, "GET", url) for _ in range(12)))
    assert sorted(s for s, _, _ in results) == [200] * 4 + [429] * 8
    assert len(demo.violations) == 8
    assert all(4 <= v.retry_after_header <= 5 for v in demo.violations)
    demo.reset()
    assert demo.violations == []
    status, _, _ = await fetch(http, "GET", url)
    assert status == 200


async def test_hang_is_cancelled_by_a_client_timeout(
    demo: DemoServer, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await fetch(http, "GET", f"{demo.url}/hang", timeout=aiohttp.ClientTimeout(total=0.2))
    assert demo.count("/hang") == 1
    status, _, _ = await fetch(http, "GET", f"{demo.url}/data/after")
    assert status == 200


async def test_reset_drops_the_connection(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    # POST, because aiohttp retries an idempotent request once on a dropped connection.
    with pytest.raises(aiohttp.ClientConnectionError):
        await fetch(http, "POST", f"{demo.url}/reset")
    assert demo.count("/reset") == 1


async def test_malformed_json_body(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{demo.url}/malformed") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        with pytest.raises(json.JSONDecodeError):
            await resp.json()


async def test_bytes_streams_exactly_n_bytes(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    n = 200_000
    async with http.get(f"{demo.url}/bytes/{n}") as resp:
        assert resp.content_type == "application/octet-stream"
        assert resp.content_length == n
        data = await resp.read()
    assert len(data) == n
    assert data[:256] == bytes(range(256))
    assert data[65536 : 65536 + 4] == bytes(range(4))
    async with http.get(f"{demo.url}/bytes/0") as resp:
        assert await resp.read() == b""
    status, _, _ = await fetch(http, "GET", f"{demo.url}/bytes/lots")
    assert status == 400


async def test_huge_is_about_n_mib_of_json(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{demo.url}/huge?mb=2") as resp:
        raw = await resp.read()
    assert 2 * 2**20 <= len(raw) < 2 * 2**20 + 1024
    items = json.loads(raw)["items"]
    assert items[0] == {"id": 0, "name": "item-00000000", "value": 0}
    status, _, _ = await fetch(http, "GET", f"{demo.url}/huge?mb=0")
    assert status == 400


# -- the request log ------------------------------------------------------------------------


async def test_record_fields(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    loop = asyncio.get_running_loop()
    before, wall_before = loop.time(), time.time()
    await fetch(
        http,
        "POST",
        f"{demo.url}/enrich?q=1&q=2&z=",
        json={"a": 1},
        headers={"X-Request-Id": "r-9"},
    )
    after, wall_after = loop.time(), time.time()
    (rec,) = demo.log
    assert isinstance(rec, RequestRecord)
    assert rec.seq == 1
    assert before <= rec.t <= after
    assert wall_before <= rec.wall <= wall_after
    assert (rec.method, rec.path) == ("POST", "/enrich")
    assert rec.query == {"q": "2", "z": ""}
    # aiohttp sends "X-Request-ID"; the log answers to any spelling.
    assert rec.headers["X-Request-Id"] == rec.headers["x-request-id"] == "r-9"
    assert "X-REQUEST-ID" in rec.headers
    assert rec.headers.get("X-Missing") is None
    assert "x-request-id" in list(rec.headers)
    assert rec.body == b'{"a": 1}'
    assert rec.json == {"a": 1}
    with pytest.raises(AttributeError):
        rec.seq = 5  # type: ignore[misc]


async def test_json_property_is_none_for_empty_or_invalid_bodies(
    demo: DemoServer, http: aiohttp.ClientSession
) -> None:
    await fetch(http, "GET", f"{demo.url}/echo")
    await fetch(http, "POST", f"{demo.url}/echo", data=b"{nope")
    assert [r.json for r in demo.log] == [None, None]
    assert [r.body for r in demo.log] == [b"", b"{nope"]


async def test_log_is_in_arrival_order(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    await asyncio.gather(*(fetch(http, "GET", f"{demo.url}/data/{i}") for i in range(30)))
    log = demo.log
    assert [r.seq for r in log] == list(range(1, 31))
    times = [r.t for r in log]
    assert times == sorted(times)
    assert sorted(r.path for r in log) == sorted(f"/data/{i}" for i in range(30))


async def test_requests_and_count_filter(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    await fetch(http, "GET", f"{demo.url}/users/1")
    await fetch(http, "GET", f"{demo.url}/users/1/posts")
    await fetch(http, "POST", f"{demo.url}/echo")
    await fetch(http, "GET", f"{demo.url}/echo")
    assert demo.count() == 4
    assert demo.count("/users/1") == 1
    assert demo.count(prefix="/users/") == 2
    assert demo.count(method="post") == 1
    assert demo.count("/echo", method="GET") == 1
    assert [r.path for r in demo.requests(prefix="/users")] == ["/users/1", "/users/1/posts"]


async def test_reset_clears_the_log_and_restarts_seq(
    demo: DemoServer, http: aiohttp.ClientSession
) -> None:
    await fetch(http, "GET", f"{demo.url}/data/a")
    demo.reset()
    assert demo.log == []
    await fetch(http, "GET", f"{demo.url}/data/b")
    assert [(r.seq, r.path) for r in demo.log] == [(1, "/data/b")]


async def test_log_limit_keeps_the_newest(http: aiohttp.ClientSession) -> None:
    async with DemoServer(log_limit=3) as srv:
        for i in range(5):
            await fetch(http, "GET", f"{srv.url}/data/{i}")
        assert [r.seq for r in srv.log] == [3, 4, 5]


async def test_disabled_log_still_numbers_requests(http: aiohttp.ClientSession) -> None:
    async with DemoServer(log_requests=False) as srv:
        _, first, _ = await fetch(http, "POST", f"{srv.url}/processor/charge", json={})
        _, second, _ = await fetch(http, "POST", f"{srv.url}/processor/charge", json={})
        assert (first["transaction_id"], second["transaction_id"]) == ("txn-1", "txn-2")
        assert srv.log == []


async def test_log_over_http(demo: DemoServer, http: aiohttp.ClientSession) -> None:
    await fetch(http, "POST", f"{demo.url}/echo?x=1", data=b"hello", headers={"X-A": "b"})
    await fetch(http, "GET", f"{demo.url}/limited/h?limit=1")
    await fetch(http, "GET", f"{demo.url}/limited/h?limit=1")
    status, body, _ = await fetch(http, "GET", f"{demo.url}/_log")
    assert status == 200
    first = body["requests"][0]
    assert set(first) == {"seq", "t", "wall", "method", "path", "query", "headers", "body"}
    assert (first["method"], first["path"], first["query"]) == ("POST", "/echo", {"x": "1"})
    assert first["body"] == "hello"
    assert first["headers"]["x-a"] == "b"
    assert first["t"] == demo.log[0].t
    assert [v["seq"] for v in body["violations"]] == [3]
    assert demo.count() == 3  # reading /_log is not itself logged
    status, body, _ = await fetch(http, "DELETE", f"{demo.url}/_log")
    assert (status, body) == (200, {"reset": True})
    assert demo.log == []
    assert demo.violations == []


# -- max_in_window -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("times", "window", "expected"),
    [
        ([], 1.0, 0),
        ([5.0], 1.0, 1),
        ([0.0, 1.0], 1.0, 1),  # half-open: exactly one window apart never share
        ([0.0, 0.999], 1.0, 2),
        ([0.0, 0.0, 0.0], 0.001, 3),
        ([3.0, 0.5, 0.1, 2.0, 0.9], 1.0, 3),  # unsorted input
        ([0.0, 0.5, 1.0, 1.5, 2.0], 1.0, 2),
        ([0.0, 0.1, 0.2, 5.0, 5.05, 5.1, 5.15], 0.2, 4),
    ],
)
def test_max_in_window(times: list[float], window: float, expected: int) -> None:
    assert max_in_window(times, window) == expected


@pytest.mark.parametrize("window", [0.0, -1.0])
def test_max_in_window_rejects_a_non_positive_window(window: float) -> None:
    with pytest.raises(ValueError, match="window"):
        max_in_window([1.0], window)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_local_redis_pins_its_server_to_the_cpu_it_is_given(tmp_path: Path) -> None:
    cpu = min(os.sched_getaffinity(0))
    with LocalRedis(workdir=tmp_path, cpu=cpu) as redis:
        assert redis._proc is not None
        assert os.sched_getaffinity(redis._proc.pid) == {cpu}

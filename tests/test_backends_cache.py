"""Persistent cache backends: `SqliteCache` and `RedisCache`, and the codec they share.

Engine tests run the real demo server and a real redis-server, and count what the demo
server saw: a hit from a second orchestrator, or a second process, sends nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _app_server import serving
from aiohttp import web
from multidict import CIMultiDict

from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    CallState,
    ConfigError,
    OrchestrationMode,
)
from apiorch_nb._http import Response
from apiorch_nb.backends import RedisCache, SqliteCache, cache_from_url
from apiorch_nb.backends._best_effort import BestEffort
from apiorch_nb.backends._codec import decode_response, encode_response, storage_key
from apiorch_nb.cache import default_cache_key
from apiorch_nb.demo import DemoServer, LocalRedis

# -- the codec --------------------------------------------------------------------------------


def response(body: bytes = b'{"a": 1}', **headers: str) -> Response:
    pairs = CIMultiDict([("Content-Type", "application/json; charset=utf-8")])
    for name, value in headers.items():
        pairs.add(name.replace("_", "-"), value)
    return Response(200, pairs, body, "http://127.0.0.1:1/x?q=1", "GET")


def test_a_response_survives_the_round_trip_with_repeated_headers() -> None:
    original = Response(
        203,
        CIMultiDict([("Content-Type", "image/png"), ("Link", "<a>"), ("Link", "<b>")]),
        bytes(range(256)),
        "http://127.0.0.1:1/img",
        "HEAD",
    )
    copy = decode_response(encode_response(original))
    assert copy is not None
    assert (copy.status, copy.method, copy.url, copy.body) == (
        203,
        "HEAD",
        "http://127.0.0.1:1/img",
        bytes(range(256)),
    )
    assert copy.headers.getall("link") == ["<a>", "<b>"]
    assert copy.content_type == "image/png"


def test_set_cookie_is_never_encoded() -> None:
    data = encode_response(response(Set_Cookie="session=s3cr3t", set_cookie2="x=t0ken", X_Kept="1"))
    assert b"s3cr3t" not in data and b"t0ken" not in data
    copy = decode_response(data)
    assert copy is not None
    assert "Set-Cookie" not in copy.headers and "Set-Cookie2" not in copy.headers
    assert copy.headers["X-Kept"] == "1"
    assert copy.json() == {"a": 1}


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: b"\x02" + d[1:],  # another version
        lambda d: d[:-1],  # truncated body
        lambda d: d[:12],  # truncated header
        lambda d: d[:9] + b"{" + d[10:],  # header is not our JSON
        lambda d: b"",
    ],
)
def test_an_unreadable_entry_decodes_as_a_miss(mangle: Callable[[bytes], bytes]) -> None:
    assert decode_response(mangle(encode_response(response()))) is None


def test_the_default_key_is_stored_as_it_is_and_other_keys_as_a_digest() -> None:
    default = default_cache_key("GET", "http://127.0.0.1/x", {}, {}, None)
    assert storage_key(default) == default
    custom = storage_key(("user", 7))
    assert len(custom) == 64 and custom != storage_key(("user", 8))
    assert storage_key("token-abc") != "token-abc"  # a custom key may hold a secret
    assert storage_key("1") != storage_key(1)


# -- the engine with each backend ----------------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh cache URL for each persistent backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/cache/api.db"
    else:
        yield request.getfixturevalue("redis_url") + "?prefix=t"


def stored_blobs(url: str) -> list[bytes]:
    """Every value the backend at `url` holds, read behind the cache's back."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return [row[0] for row in conn.execute("SELECT value FROM apiorch_cache")]
    import redis

    client = redis.Redis.from_url(url.partition("?")[0])
    try:
        return [client.get(k) for k in client.keys("*")]
    finally:
        client.close()


def orchestrator(cache: str, *endpoints: APIEndpoint, **config: Any) -> APIOrchestrator:
    config.setdefault("mode", OrchestrationMode.PARALLEL)
    config.setdefault("cache_ttl", 30.0)
    return APIOrchestrator(APIOrchestrationConfig(endpoints=list(endpoints), **config), cache=cache)


def endpoint(name: str, url: str, **kwargs: Any) -> APIEndpoint:
    kwargs.setdefault("retry_count", 0)
    return APIEndpoint(name, url, **kwargs)


async def test_a_second_orchestrator_is_answered_from_the_cache(
    demo: DemoServer, backend: str
) -> None:
    ep = endpoint("user", f"{demo.url}/users/4")
    async with orchestrator(backend, ep) as first:
        fresh = await first.execute()
    async with orchestrator(backend, ep) as second:
        again = await second.execute()
        assert second.last_run.records["user"].state is CallState.CACHED
        assert second.get_metrics().cache_hits == 1
    assert again == fresh and fresh["user"]["id"] == 4
    assert demo.count("/users/4") == 1


async def test_a_custom_key_is_shared_between_orchestrators(demo: DemoServer, backend: str) -> None:
    ep = endpoint("data", f"{demo.url}/data/{{name}}")

    def by_path(e: APIEndpoint) -> tuple[str, str]:
        return ("data", e.url.rpartition("/")[2][:1])  # "xa" and "xb" share an entry

    async with orchestrator(backend, ep, cache_key_generator=by_path) as o:
        await o.execute({"name": "xa"})
    async with orchestrator(backend, ep, cache_key_generator=by_path) as o:
        assert await o.execute({"name": "xb"}) == {"data": {"source": "xa", "value": 2}}
    assert [r.path for r in demo.requests(prefix="/data/")] == ["/data/xa"]


async def test_entries_expire_after_cache_ttl(demo: DemoServer, backend: str) -> None:
    ep = endpoint("user", f"{demo.url}/users/3")
    async with orchestrator(backend, ep, cache_ttl=0.3) as o:
        await o.execute()
        await o.execute()
        assert demo.count("/users/3") == 1
        await asyncio.sleep(0.4)
        await o.execute()
        assert o.last_run.records["user"].state is CallState.OK
    assert demo.count("/users/3") == 2


async def test_clear_cache_forgets_only_that_endpoint(demo: DemoServer, backend: str) -> None:
    # "a:b" starts like "a" in a Redis key; clearing "a" must still leave it alone.
    eps = [endpoint(n, f"{demo.url}/data/{p}") for n, p in (("a", "a"), ("a:b", "ab"), ("c", "c"))]
    async with orchestrator(backend, *eps) as o:
        await o.execute()
        o.clear_cache("a")
    async with orchestrator(backend, *eps) as o:
        await o.execute()
        states = {n: r.state for n, r in o.last_run.records.items()}
    assert states == {"a": CallState.OK, "a:b": CallState.CACHED, "c": CallState.CACHED}
    assert [demo.count(f"/data/{p}") for p in ("a", "ab", "c")] == [2, 1, 1]


async def test_clear_all_cache_forgets_every_endpoint(demo: DemoServer, backend: str) -> None:
    eps = [endpoint(n, f"{demo.url}/data/{n}") for n in ("a", "b")]
    async with orchestrator(backend, *eps) as o:
        await o.execute()
        o.clear_all_cache()
        assert stored_blobs(backend) == []
        await o.execute()
    assert demo.count("/data/a") == demo.count("/data/b") == 2


async def test_a_2xx_that_does_not_parse_is_never_stored(demo: DemoServer, backend: str) -> None:
    async with orchestrator(backend, endpoint("bad", f"{demo.url}/malformed")) as o:
        await o.execute()
        await o.execute()
        assert o.last_run.records["bad"].state is CallState.FAILED
    assert demo.count("/malformed") == 2
    assert stored_blobs(backend) == []


async def test_concurrent_identical_misses_make_one_request(demo: DemoServer, backend: str) -> None:
    async with orchestrator(backend, endpoint("slow", f"{demo.url}/delay/100")) as o:
        results = await asyncio.gather(*(o.execute() for _ in range(5)))
        assert o.get_metrics().cache_hits == 4
    assert results == [{"slow": {"delayed_ms": 100}}] * 5
    assert demo.count("/delay/100") == 1


async def test_set_cookie_is_not_persisted_and_other_headers_are(backend: str) -> None:
    seen: list[str] = []

    async def login(request: web.Request) -> web.Response:
        seen.append(request.path)
        resp = web.json_response({"ok": True}, headers={"X-Kept": "yes"})
        resp.set_cookie("session", "s3cr3t-cookie")
        return resp

    app = web.Application()
    app.router.add_get("/login", login)
    headers: list[dict[str, str]] = []

    def keep_headers(r: Response) -> Any:
        headers.append(dict(r.headers))
        return r.json()

    async with serving(app) as base_url:
        ep = endpoint("login", f"{base_url}/login", response_parser=keep_headers)
        for _ in range(2):
            async with orchestrator(backend, ep) as o:
                assert await o.execute() == {"login": {"ok": True}}
    assert seen == ["/login"]
    fresh, cached = headers
    assert "session=s3cr3t-cookie" in fresh["Set-Cookie"]
    assert "Set-Cookie" not in cached
    assert cached["X-Kept"] == "yes"
    assert all(b"s3cr3t" not in blob for blob in stored_blobs(backend))


# -- sqlite -------------------------------------------------------------------------------------

_SCRIPT = """
import asyncio, json, sys
from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator

async def main(url, cache):
    config = APIOrchestrationConfig([APIEndpoint("user", url, retry_count=0)], cache_ttl=60)
    async with APIOrchestrator(config, cache=cache) as o:
        result = await o.execute()
    print(json.dumps([o.last_run.records["user"].state.value, result]))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def run_in_new_process(url: str, cache: str) -> list[Any]:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, url, cache], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_a_sqlite_cache_survives_a_restart(demo: DemoServer, tmp_path: Path) -> None:
    cache = f"sqlite:///{tmp_path}/restart.db"
    first = run_in_new_process(f"{demo.url}/users/5", cache)
    second = run_in_new_process(f"{demo.url}/users/5", cache)
    assert first[0] == "ok" and second[0] == "cached"
    assert first[1] == second[1]
    assert demo.count("/users/5") == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_sqlite_expiry_is_wall_clock_and_expired_rows_are_swept(tmp_path: Path) -> None:
    clock = Clock()
    cache = SqliteCache(tmp_path / "c.db", clock=clock)
    cache.set("a", "k1", response(b"1"), ttl=10)
    clock.now += 9.9
    assert cache.get("a", "k1").body == b"1"  # type: ignore[union-attr]
    clock.now += 0.1
    assert cache.get("a", "k1") is None
    clock.now += 3600  # past the sweep interval: the next write deletes expired rows
    cache.set("a", "k2", response(b"2"), ttl=10)
    with closing(sqlite3.connect(tmp_path / "c.db")) as conn:
        assert conn.execute("SELECT count(*) FROM apiorch_cache").fetchone() == (1,)
    assert len(cache) == 1
    cache.close()


def in_threads(work: Callable[[int], object], n: int) -> None:
    """Run ``work(0)``, ..., ``work(n - 1)`` in `n` threads at once; fail on any error."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_sqlite_cache_is_shared_by_threads(tmp_path: Path) -> None:
    cache = SqliteCache(tmp_path / "threads.db")

    def work(n: int) -> None:
        for i in range(100):
            cache.set("t", (n, i), response(str(i).encode()), ttl=60)
            assert cache.get("t", (n, i)).body == str(i).encode()  # type: ignore[union-attr]

    in_threads(work, 6)
    assert len(cache) == 600
    cache.close()


_WRITER = """
import sys
from multidict import CIMultiDict
from apiorch_nb._http import Response
from apiorch_nb.backends import SqliteCache
cache = SqliteCache(sys.argv[1])
for i in range(300):
    cache.set("w", (sys.argv[2], i), Response(200, CIMultiDict(), b"x" * 2000, "u"), ttl=60)
    assert cache.get("w", (sys.argv[2], i)) is not None
"""


def test_several_processes_write_one_sqlite_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "procs.db"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(n)], stderr=subprocess.PIPE)
        for n in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    cache = SqliteCache(path)
    assert len(cache) == 900
    cache.close()


# -- redis --------------------------------------------------------------------------------------


async def test_redis_entries_carry_their_ttl_under_the_url_prefix(
    demo: DemoServer, redis_url: str
) -> None:
    import redis.asyncio

    async with orchestrator(
        redis_url + "?prefix=myproj", endpoint("u", f"{demo.url}/users/1")
    ) as o:
        await o.execute()
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = await client.keys("*")
        assert len(keys) == 1 and keys[0].startswith(b"myproj:cache:u:")
        assert 25_000 < await client.pttl(keys[0]) <= 30_000
    finally:
        await client.aclose()


async def test_redis_clear_all_leaves_other_prefixes_alone(
    demo: DemoServer, redis_url: str
) -> None:
    ep = endpoint("u", f"{demo.url}/users/1")
    async with orchestrator(redis_url + "?prefix=one", ep) as one:
        await one.execute()
    async with orchestrator(redis_url + "?prefix=two", ep) as two:
        await two.execute()
        two.clear_all_cache()
    async with orchestrator(redis_url + "?prefix=one", ep) as one:
        await one.execute()
        assert one.last_run.records["u"].state is CallState.CACHED
    assert demo.count("/users/1") == 2


def test_one_orchestrator_runs_on_several_event_loops_in_turn(
    demo: DemoServer, redis_url: str
) -> None:
    o = orchestrator(redis_url, endpoint("u", f"{demo.url}/users/6"))
    states: list[CallState] = []

    def run_once() -> None:
        asyncio.run(o.execute())
        states.append(o.last_run.records["u"].state)  # type: ignore[union-attr]

    run_once()
    run_once()
    worker = threading.Thread(target=run_once)  # a Dask worker thread's own loop
    worker.start()
    worker.join()
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(o.execute())
        states.append(o.last_run.records["u"].state)  # type: ignore[union-attr]
        loop.run_until_complete(o.close())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    assert states == [CallState.OK, CallState.CACHED, CallState.CACHED, CallState.CACHED]
    assert demo.count("/users/6") == 1


def test_redis_cache_serves_two_loops_at_once(redis_url: str) -> None:
    cache = RedisCache(redis_url)

    async def work(n: int) -> None:
        for i in range(50):
            await cache.set("t", (n, i), response(str(i).encode()), ttl=60)
            got = await cache.get("t", (n, i))
            assert got is not None and got.body == str(i).encode()

    in_threads(lambda n: asyncio.run(work(n)), 3)  # each thread runs its own loop
    assert len(stored_blobs(redis_url)) == 150


async def test_more_concurrent_lookups_than_connections_wait_for_one(redis_url: str) -> None:
    cache = RedisCache(redis_url + "?max_connections=4")
    await cache.set("n", "k", response(), ttl=60)
    found = await asyncio.gather(*(cache.get("n", "k") for _ in range(200)))
    assert all(r is not None and r.json() == {"a": 1} for r in found)
    await cache.aclose()


# -- a failing backend: hits are lost, calls never -------------------------------------------


@dataclass
class Failing:
    url: str  #: the cache URL
    shown: str  #: how warnings name the backend
    fail: Callable[[], None]  #: breaks the store under the cache


@pytest.fixture(params=["sqlite", "redis"])
def failing(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Failing]:
    """A cache of its own that `fail()` breaks: a sqlite table dropped, a Redis stopped."""
    if request.param == "sqlite":
        path = tmp_path / "failing.db"

        def drop_table() -> None:
            with closing(sqlite3.connect(path)) as conn:
                conn.execute("DROP TABLE apiorch_cache")

        yield Failing(f"sqlite:///{path}", repr(str(path)), drop_table)
        return
    with ExitStack() as server:  # a server of its own, stopped by leaving its context
        url = server.enter_context(LocalRedis(workdir=tmp_path)).url
        yield Failing(url + "?prefix=f", f"{url!r} (prefix 'f')", server.close)


async def test_a_failing_cache_costs_its_hits_never_the_calls(
    demo: DemoServer, failing: Failing, caplog: pytest.LogCaptureFixture
) -> None:
    eps = [endpoint(f"u{i}", f"{demo.url}/users/{i}") for i in range(1, 6)]
    async with orchestrator(failing.url, *eps) as o:
        first = await o.execute()
        assert await o.execute() == first
        assert demo.count(prefix="/users/") == 5  # the second run came from the cache
        failing.fail()
        with caplog.at_level(logging.WARNING, logger="apiorch_nb"):
            for _ in range(4):
                assert await o.execute() == first
                assert o.last_run is not None
                assert {r.state for r in o.last_run.records.values()} == {CallState.OK}
    assert demo.count(prefix="/users/") == 5 * 5  # every call after the failure was sent
    # The first failed get makes the cache rest: the other gets and every set skip it.
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"cache {failing.shown}: get failed; counted as a miss (")
    assert "calls go on without the cache, which is tried again in 10 s." in warning


class BlackHole:
    """A TCP server on 127.0.0.1 that reads everything and never answers: a Redis that
    hangs. `connections` counts the connections it accepted."""

    def __init__(self) -> None:
        self.connections = 0
        self.url = ""  #: a Redis URL for it, with a 0.3 s socket timeout
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> BlackHole:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            while await reader.read(65536):
                pass
            writer.close()

        self._server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}/0?socket_timeout=0.3&prefix=h"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


async def test_a_hanging_redis_costs_one_timeout_not_one_per_call(
    demo: DemoServer, caplog: pytest.LogCaptureFixture
) -> None:
    eps = [endpoint(f"u{i}", f"{demo.url}/users/{i}") for i in range(1, 6)]
    async with BlackHole() as hole:
        with caplog.at_level(logging.WARNING, logger="apiorch_nb"):
            async with orchestrator(hole.url, *eps) as o:
                started = time.monotonic()
                await o.execute()
                first_run_s = time.monotonic() - started
                tried = hole.connections
                started = time.monotonic()
                for _ in range(3):
                    results = await o.execute()
                    assert [r["id"] for r in results.values()] == [1, 2, 3, 4, 5]
                later_runs_s = time.monotonic() - started
    # The first run's lookups waited for the socket timeout; since then nothing asked.
    assert tried >= 1 and hole.connections == tried
    assert first_run_s >= 0.3 and later_runs_s < first_run_s
    assert demo.count(prefix="/users/") == 4 * 5
    assert "get failed; counted as a miss (TimeoutError" in caplog.text


def test_a_resting_cache_is_tried_again_by_one_call_at_a_time() -> None:
    clock = Clock()
    guard = BestEffort("cache 'x'", "get failed; counted as a miss", (OSError,), clock=clock)
    assert guard.usable()
    with guard:
        raise OSError("down")
    assert not guard.usable()
    clock.now += 9.9
    assert not guard.usable()  # still resting
    clock.now += 0.1
    assert guard.usable()  # this call is the probe...
    assert not guard.usable()  # ...and no other goes while it is out
    with guard:
        raise OSError("still down")  # the probe failed: rest again
    clock.now += 5
    assert not guard.usable()
    clock.now += 5
    assert guard.usable()
    with pytest.raises(asyncio.CancelledError), guard:
        raise asyncio.CancelledError  # a cancelled probe says nothing: another may go
    assert guard.usable()
    with guard:
        pass  # the probe worked: the cache is back for everyone
    assert guard.usable() and guard.usable()


def test_cache_failures_are_logged_at_most_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    guard = BestEffort("cache 'x'", "get failed; counted as a miss", (OSError,), clock=clock)
    with caplog.at_level(logging.WARNING, logger="apiorch_nb"):
        for _ in range(10_000):
            with guard:
                raise ConnectionRefusedError("down")
        clock.now += 60
        with guard:
            raise OSError("still down")
        with pytest.raises(KeyError), guard:
            raise KeyError("a bug is not a backend failure")
    tail = (
        "; calls go on without the cache, which is tried again in 10 s. Logged at most every 60 s."
    )
    assert [r.getMessage() for r in caplog.records] == [
        "cache 'x': get failed; counted as a miss (ConnectionRefusedError: down)" + tail,
        "cache 'x': get failed; counted as a miss (OSError: still down) "
        "(9999 more since the last warning)" + tail,
    ]


async def test_a_redis_cache_warning_never_shows_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once the socket closes
    cache = RedisCache(f"redis://:hunter2@127.0.0.1:{port}/0?prefix=p")
    with caplog.at_level(logging.WARNING, logger="apiorch_nb"):
        assert await cache.get("n", "k") is None
        await cache.set("n", "k", response(), ttl=60)
    await cache.aclose()
    assert len(caplog.records) == 1 and "hunter2" not in caplog.text  # the set was skipped
    assert f"cache 'redis://[REDACTED]@127.0.0.1:{port}/0' (prefix 'p'): get failed" in caplog.text


# -- URLs and imports ---------------------------------------------------------------------------


def test_sqlite_urls_are_relative_with_three_slashes_and_absolute_with_four(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = cache_from_url("sqlite:///nested/dir/rel.db")
    absolute = cache_from_url(f"sqlite:///{tmp_path}/abs.db")  # tmp_path starts with "/"
    assert isinstance(relative, SqliteCache) and isinstance(absolute, SqliteCache)
    assert relative.path == tmp_path / "nested" / "dir" / "rel.db"
    assert absolute.path == tmp_path / "abs.db"
    assert relative.path.exists() and absolute.path.exists()
    relative.close()
    absolute.close()


def test_a_relative_sqlite_url_reaches_workers_as_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint("a", "http://127.0.0.1:1/a", cache_ttl=60)]
    )
    monkeypatch.chdir(tmp_path)
    kernel = APIOrchestrator(config, cache="sqlite:///enrich.db")
    elsewhere = tmp_path / "worker"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a Dask worker rebuilds the orchestrator from backend_urls
    worker = APIOrchestrator(config, **kernel.backend_urls)
    assert kernel.backend_urls == {"cache": f"sqlite:///{tmp_path}/enrich.db"}
    assert worker._services.cache.path == tmp_path / "enrich.db"  # type: ignore[union-attr]
    assert not (elsewhere / "enrich.db").exists()


def test_a_redis_url_makes_a_redis_cache() -> None:
    cache = cache_from_url("rediss://:pw@127.0.0.1:6390/2?prefix=p&socket_timeout=2")
    assert isinstance(cache, RedisCache)
    assert cache.prefix == "p"
    assert repr(cache) == (
        "RedisCache('rediss://[REDACTED]@127.0.0.1:6390/2?socket_timeout=2', prefix='p')"
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sqlite://cache.db", "sqlite:///relative/path.db"),
        ("sqlite:///", "sqlite:///relative/path.db"),
        ("sqlite:///x.db?mode=ro", "query"),
        ("sqlite:///:memory:", 'cache="memory"'),
        ("sqlite:////proc/no/such/dir/x.db", "cannot open"),
        ("redis://", "no host"),
        ("redis://127.0.0.1:port/0", "not a valid redis URL"),
        ("redis://127.0.0.1:6379/zero", "database must be a number"),
        ("redis://127.0.0.1:6379/0?prefix=", "non-empty prefix"),
        ("redis://127.0.0.1:6379/0?socket_timeout=soon", "socket_timeout"),
        ("redis://127.0.0.1:6379/0?no_such_option=1", "no_such_option"),
        ("memcached://127.0.0.1", "unsupported URL"),
    ],
)
def test_a_bad_cache_url_is_a_config_error_naming_it(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        cache_from_url(url)
    message = str(info.value)
    assert says in message
    if not url.startswith("sqlite:////proc"):
        assert repr(url) in message


def test_a_redis_password_never_shows_in_a_url_error() -> None:
    with pytest.raises(ConfigError) as info:
        cache_from_url("redis://:hunter2@127.0.0.1:6379/zero")
    assert "hunter2" not in str(info.value)


def test_the_backends_are_exported_and_imported_only_when_used(tmp_path: Path) -> None:
    import apiorch_nb.backends

    assert {"RedisCache", "SqliteCache"} <= set(apiorch_nb.backends.__all__)
    code = (
        "import sys, json, apiorch_nb;"
        "before = [m for m in ('sqlite3', 'redis') if m in sys.modules];"
        "from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator;"
        "c = APIOrchestrationConfig([APIEndpoint('a', 'http://127.0.0.1:1/a')], cache_ttl=1);"
        f"APIOrchestrator(c, cache='sqlite:///{tmp_path}/i.db');"
        "print(json.dumps([before, [m for m in ('sqlite3', 'redis') if m in sys.modules]]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [[], ["sqlite3"]]

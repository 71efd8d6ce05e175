"""Response cache: `MemoryCache` units with a manual clock, then the engine's cache in runs.

Engine tests count what reached the demo server: a hit sends nothing and spends no rate
budget, and concurrent identical misses make one origin request.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    CallState,
    ConfigError,
    OrchestrationMode,
)
from apiorch_nb.cache import MemoryCache, SingleFlight, default_cache_key
from apiorch_nb.demo import DemoServer


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


# -- MemoryCache ----------------------------------------------------------------------------


def test_entry_is_returned_until_its_ttl_runs_out() -> None:
    clock = Clock()
    cache = MemoryCache(clock=clock)
    cache.set("users", "k", {"id": 1}, ttl=10)
    clock.now += 9.99
    assert cache.get("users", "k") == {"id": 1}
    clock.now += 0.01
    assert cache.get("users", "k") is None
    assert len(cache) == 0


def test_missing_key_is_none() -> None:
    assert MemoryCache().get("users", "nope") is None


def test_namespaces_do_not_share_keys() -> None:
    cache = MemoryCache()
    cache.set("a", "k", 1, ttl=10)
    cache.set("b", "k", 2, ttl=10)
    assert (cache.get("a", "k"), cache.get("b", "k")) == (1, 2)


def test_setting_again_replaces_value_and_ttl() -> None:
    clock = Clock()
    cache = MemoryCache(clock=clock)
    cache.set("a", "k", 1, ttl=1)
    clock.now += 0.5
    cache.set("a", "k", 2, ttl=1)
    clock.now += 0.9
    assert cache.get("a", "k") == 2


def test_least_recently_used_entry_is_dropped_past_max_entries() -> None:
    cache = MemoryCache(max_entries=2)
    cache.set("a", 1, "one", ttl=10)
    cache.set("a", 2, "two", ttl=10)
    assert cache.get("a", 1) == "one"  # 1 is now the most recently used
    cache.set("a", 3, "three", ttl=10)
    assert cache.get("a", 2) is None
    assert cache.get("a", 1) == "one"
    assert cache.get("a", 3) == "three"
    assert len(cache) == 2


def test_clear_namespace_drops_only_that_namespace() -> None:
    cache = MemoryCache()
    cache.set("a", 1, "x", ttl=10)
    cache.set("a", 2, "y", ttl=10)
    cache.set("b", 1, "z", ttl=10)
    cache.clear("a")
    assert cache.get("a", 1) is None
    assert cache.get("a", 2) is None
    assert cache.get("b", 1) == "z"


def test_clear_without_namespace_drops_everything() -> None:
    cache = MemoryCache()
    cache.set("a", 1, "x", ttl=10)
    cache.set("b", 1, "z", ttl=10)
    cache.clear()
    assert len(cache) == 0


async def test_single_flight_has_one_leader_and_followers_get_its_value() -> None:
    flight = SingleFlight()
    assert flight.claim("a", "k") is None
    follower = flight.claim("a", "k")
    assert follower is not None
    assert flight.claim("b", "k") is None  # another namespace leads on its own
    flight.finish("a", "k", "value")
    assert await follower == "value"
    assert flight.claim("a", "k") is None  # finished: the next miss leads again


def test_default_key_hashes_credentials_and_hides_them() -> None:
    def key(headers: dict[str, str]) -> str:
        return default_cache_key("GET", "http://x/y", {"q": 1}, headers, None)

    alice = key({"Authorization": "Bearer alice"})
    assert alice != key({"Authorization": "Bearer bob"})
    assert alice != key({})
    assert alice == key({"authorization": "Bearer alice", "Accept": "text/plain"})
    assert "alice" not in alice


def test_default_key_covers_method_url_params_and_body() -> None:
    base = default_cache_key("GET", "http://x/y", {"q": 1}, {}, None)
    assert base != default_cache_key("HEAD", "http://x/y", {"q": 1}, {}, None)
    assert base != default_cache_key("GET", "http://x/z", {"q": 1}, {}, None)
    assert base != default_cache_key("GET", "http://x/y", {"q": 2}, {}, None)
    assert base != default_cache_key("GET", "http://x/y", {"q": 1}, {}, {"b": 1})
    assert base == default_cache_key("GET", "http://x/y", {"q": "1"}, {}, None)


# -- in the engine --------------------------------------------------------------------------


def orchestrator(*endpoints: APIEndpoint, **config: Any) -> APIOrchestrator:
    config.setdefault("mode", OrchestrationMode.PARALLEL)
    config.setdefault("cache_ttl", 30.0)
    return APIOrchestrator(APIOrchestrationConfig(endpoints=list(endpoints), **config))


def endpoint(name: str, url: str, **kwargs: Any) -> APIEndpoint:
    kwargs.setdefault("retry_count", 0)
    return APIEndpoint(name, url, **kwargs)


async def test_a_second_execute_within_ttl_sends_nothing(demo: DemoServer) -> None:
    async with orchestrator(endpoint("user", f"{demo.url}/users/1")) as o:
        first = await o.execute()
        assert o.last_run.records["user"].state is CallState.OK
        second = await o.execute()
    assert demo.count("/users/1") == 1
    assert second == first
    record = o.last_run.records["user"]
    assert record.state is CallState.CACHED
    assert record.attempts == []
    assert o.last_run.attempt_rows()[0]["cache_hit"] is True
    metrics = o.get_metrics()
    assert metrics.cache_hits == 1
    assert metrics.total_requests == 1


async def test_a_cache_hit_is_parsed_and_transformed_like_a_fresh_response(
    demo: DemoServer,
) -> None:
    ep = endpoint(
        "user",
        f"{demo.url}/users/2",
        response_parser=lambda r: r.json()["name"],
        transform_output=str.upper,
    )
    async with orchestrator(ep) as o:
        assert await o.execute() == {"user": "USER 2"}
        assert await o.execute() == {"user": "USER 2"}
    assert demo.count("/users/2") == 1


async def test_a_cache_hit_spends_no_rate_budget(demo: DemoServer) -> None:
    ep = endpoint("user", f"{demo.url}/users/1", rate_limit=1)
    async with orchestrator(ep, rate_limit_window=5.0) as o:
        await o.execute()
        started = time.monotonic()
        for _ in range(3):
            await o.execute()
        elapsed = time.monotonic() - started
        status = o.limiter.get_status("endpoint:user")
    assert elapsed < 0.2  # a single send would have waited ~5 s for the window
    assert status.rates[0].used == 1
    assert o.last_run.records["user"].state is CallState.CACHED
    assert demo.count("/users/1") == 1


async def test_concurrent_identical_misses_make_one_origin_request(demo: DemoServer) -> None:
    async with orchestrator(endpoint("slow", f"{demo.url}/delay/100")) as o:
        results = await asyncio.gather(*(o.execute() for _ in range(5)))
        assert demo.count("/delay/100") == 1
        assert all(r == {"slow": {"delayed_ms": 100}} for r in results)
        assert o.get_metrics().cache_hits == 4
        await o.execute()
    assert demo.count("/delay/100") == 1


async def test_followers_of_a_failed_leader_fetch_on_their_own(demo: DemoServer) -> None:
    async with orchestrator(endpoint("down", f"{demo.url}/status/500")) as o:
        results = await asyncio.gather(*(o.execute() for _ in range(3)))
    assert all(r["down"]["status"] == 500 for r in results)
    assert demo.count("/status/500") == 3


async def test_non_2xx_responses_are_not_cached(demo: DemoServer) -> None:
    async with orchestrator(endpoint("down", f"{demo.url}/status/503")) as o:
        await o.execute()
        await o.execute()
    assert demo.count("/status/503") == 2
    assert o.last_run.records["down"].state is CallState.FAILED


async def test_a_recovered_endpoint_is_cached_after_its_first_success(demo: DemoServer) -> None:
    ep = endpoint("flaky", f"{demo.url}/flaky/c?fail=1")
    async with orchestrator(ep) as o:
        failed = await o.execute()
        ok = await o.execute()
        again = await o.execute()
    assert failed["flaky"]["status"] == 503
    assert ok == again == {"flaky": {"key": "c", "attempt": 2}}
    assert demo.count("/flaky/c") == 2


async def test_post_is_not_cached(demo: DemoServer) -> None:
    ep = endpoint("echo", f"{demo.url}/echo", method="POST", body={"x": 1})
    async with orchestrator(ep) as o:
        await o.execute()
        await o.execute()
    assert demo.count("/echo", method="POST") == 2
    assert o.last_run.records["echo"].state is CallState.OK


async def test_head_is_cached(demo: DemoServer) -> None:
    async with orchestrator(endpoint("probe", f"{demo.url}/echo", method="HEAD")) as o:
        await o.execute()
        await o.execute()
        assert o.last_run.records["probe"].state is CallState.CACHED
    assert demo.count("/echo", method="HEAD") == 1


async def test_different_params_are_different_entries(demo: DemoServer) -> None:
    ep = endpoint("posts", f"{demo.url}/posts", params={"user_id": "{uid}"})
    async with orchestrator(ep) as o:
        one = await o.execute({"uid": 1})
        two = await o.execute({"uid": 2})
        assert await o.execute({"uid": 1}) == one
    assert one != two
    assert [r.query for r in demo.requests("/posts")] == [{"user_id": "1"}, {"user_id": "2"}]


async def test_clear_cache_forgets_only_that_endpoint(demo: DemoServer) -> None:
    a = endpoint("a", f"{demo.url}/data/a")
    b = endpoint("b", f"{demo.url}/data/b")
    async with orchestrator(a, b) as o:
        await o.execute()
        await o.execute()
        o.clear_cache("a")
        await o.execute()
        assert o.last_run.records["a"].state is CallState.OK
        assert o.last_run.records["b"].state is CallState.CACHED
    assert demo.count("/data/a") == 2
    assert demo.count("/data/b") == 1


async def test_clear_cache_of_an_unknown_endpoint_is_a_config_error(demo: DemoServer) -> None:
    async with orchestrator(endpoint("a", f"{demo.url}/data/a")) as o:
        with pytest.raises(ConfigError, match="'nope'"):
            o.clear_cache("nope")


async def test_clear_all_cache_forgets_every_endpoint(demo: DemoServer) -> None:
    a = endpoint("a", f"{demo.url}/data/a")
    b = endpoint("b", f"{demo.url}/data/b")
    async with orchestrator(a, b) as o:
        await o.execute()
        o.clear_all_cache()
        await o.execute()
        await o.execute()
    assert demo.count("/data/a") == 2
    assert demo.count("/data/b") == 2


async def test_different_authorization_headers_do_not_share_entries(demo: DemoServer) -> None:
    ep = endpoint("me", f"{demo.url}/user", headers={"Authorization": "Bearer {token}"})
    async with orchestrator(ep) as o:
        alice = await o.execute({"token": "demo-token-alice"})
        bob = await o.execute({"token": "demo-token-bob"})
        alice_again = await o.execute({"token": "demo-token-alice"})
    assert alice["me"]["username"] == "alice"
    assert bob["me"]["username"] == "bob"
    assert alice_again == alice
    assert demo.count("/user") == 2


async def test_custom_cache_key_generator_is_used_with_the_endpoint_as_sent(
    demo: DemoServer,
) -> None:
    seen: list[str] = []

    def one_key(ep: APIEndpoint) -> str:
        seen.append(ep.url)
        return "constant"

    ep = endpoint("data", f"{demo.url}/data/{{name}}")
    async with orchestrator(ep, cache_key_generator=one_key) as o:
        x = await o.execute({"name": "x"})
        y = await o.execute({"name": "yy"})
    assert x == y == {"data": {"source": "x", "value": 1}}
    assert [r.path for r in demo.requests(prefix="/data/")] == ["/data/x"]
    assert seen == [f"{demo.url}/data/x", f"{demo.url}/data/yy"]


async def test_an_unhashable_custom_key_still_works(demo: DemoServer) -> None:
    ep = endpoint("data", f"{demo.url}/data/z")
    async with orchestrator(ep, cache_key_generator=lambda e: {"url": e.url}) as o:
        await o.execute()
        await o.execute()
    assert demo.count("/data/z") == 1


async def test_entries_expire_after_cache_ttl(demo: DemoServer) -> None:
    async with orchestrator(endpoint("user", f"{demo.url}/users/3"), cache_ttl=0.15) as o:
        await o.execute()
        await o.execute()
        assert demo.count("/users/3") == 1
        await asyncio.sleep(0.2)
        await o.execute()
        assert o.last_run.records["user"].state is CallState.OK
    assert demo.count("/users/3") == 2


async def test_without_cache_ttl_every_execute_sends(demo: DemoServer) -> None:
    async with orchestrator(endpoint("user", f"{demo.url}/users/1"), cache_ttl=None) as o:
        await o.execute()
        await o.execute()
    assert demo.count("/users/1") == 2


async def test_a_2xx_that_does_not_parse_is_never_cached(demo: DemoServer) -> None:
    async with orchestrator(endpoint("bad", f"{demo.url}/malformed")) as o:
        first = await o.execute()
        second = await o.execute()
    assert demo.count("/malformed") == 2  # each run asked the server again
    assert first["bad"]["status"] is None and "JSON" in first["bad"]["error"]
    assert o.last_run.records["bad"].state is CallState.FAILED
    assert second == first


async def test_followers_of_a_leader_whose_response_did_not_parse_fetch_themselves(
    demo: DemoServer,
) -> None:
    async with orchestrator(endpoint("bad", f"{demo.url}/malformed")) as o:
        results = await asyncio.gather(*(o.execute() for _ in range(3)))
    assert all(r["bad"]["status"] is None for r in results)
    assert demo.count("/malformed") == 3

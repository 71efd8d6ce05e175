"""`map` over a real Dask LocalCluster: workers in their own processes share limits via Redis.

The workers send to the session's demo server (127.0.0.1) and take permits from a real
redis-server, so the server's arrival log is the judge: no window may see more than the
limit, every row is sent exactly once, and the result equals a run in this process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pandas as pd
import pytest

from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    ConfigError,
    MapTimeout,
)
from apiorch_nb.demo import DemoServer, max_in_window

ROWS = 2_000
LIMIT_PER_S = 400

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def dask_client() -> Iterator[object]:
    """Two single-threaded worker processes on loopback, for this module."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # No dashboard; its HTTP server (health, metrics) on a free loopback port, not
            # on 8787, which another cluster may hold.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _config(demo: DemoServer, *, rate_limit: int | None = LIMIT_PER_S) -> APIOrchestrationConfig:
    return APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(
                name="user",
                url=demo.url + "/users/{id}",
                rate_limit=rate_limit,
                rate_limit_window=1.0,
                retry_count=0,
            ),
            APIEndpoint(
                name="posts",
                url=demo.url + "/users/{user.id}/posts",
                response_parser=lambda r: r.json()["posts"],
                retry_count=0,
            ),
        ],
        max_concurrent=40,
    )


FIELDS = {"name": "user.name", "first_post": "posts.0.title", "n": lambda r: len(r["posts"])}


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"id": range(1, ROWS + 1)}, index=[f"row{i}" for i in range(ROWS)])


def test_two_workers_share_a_limit_and_match_a_single_kernel_run(
    demo: DemoServer, redis_url: str, dask_client: object
) -> None:
    df = _frame()

    async def spread_over_dask() -> pd.DataFrame:
        async with APIOrchestrator(_config(demo), limiter=redis_url) as orchestrator:
            return await orchestrator.map(df, fields=FIELDS, client=dask_client)

    async def in_this_kernel() -> pd.DataFrame:
        async with APIOrchestrator(_config(demo, rate_limit=None)) as orchestrator:
            return await orchestrator.map(df, fields=FIELDS)

    spread = asyncio.run(spread_over_dask())
    seen = demo.log
    demo.reset()
    here = asyncio.run(in_this_kernel())

    # Every row was sent exactly once (user and posts), from the workers.
    user_arrivals = [r for r in seen if r.path.count("/") == 2]
    assert len(user_arrivals) == ROWS and len({r.path for r in user_arrivals}) == ROWS
    assert len(seen) == 2 * ROWS
    # The shared limit held at the server across both worker processes ...
    times = [r.t for r in user_arrivals]
    assert max_in_window(times, 1.0) <= LIMIT_PER_S
    # ... and it was the binding constraint: 2,000 rows at 400/s take over 4 seconds.
    assert max(times) - min(times) >= ROWS / LIMIT_PER_S - 1.5
    # Row for row the same as a run in this process.
    assert (spread["status"] == "ok").all()
    pd.testing.assert_frame_equal(spread, here)
    assert list(spread.index) == list(df.index)


def test_a_dask_dataframe_is_enriched_partition_by_partition(
    demo: DemoServer, dask_client: object
) -> None:
    import dask.dataframe as dd

    df = pd.DataFrame({"id": range(1, 101)}, index=pd.RangeIndex(500, 600, name="k"))
    ddf = dd.from_pandas(df, npartitions=4)

    async def go() -> pd.DataFrame:
        async with APIOrchestrator(_config(demo, rate_limit=None)) as orchestrator:
            return await orchestrator.map(ddf, fields={"name": "user.name"}, client=dask_client)

    out = asyncio.run(go())
    assert list(out.index) == list(range(500, 600)) and out.index.name == "k"
    assert list(out["name"]) == [f"User {i}" for i in range(1, 101)]
    assert (out["status"] == "ok").all()
    assert len([r for r in demo.log if r.path.count("/") == 2]) == 100


def test_failed_rows_come_back_with_their_error(demo: DemoServer, dask_client: object) -> None:
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="s", url=demo.url + "/status/{code}", retry_count=0)]
    )
    rows = [{"code": 200}, {"code": 503}, {"code": 404}, {"code": 200}]

    async def go() -> pd.DataFrame:
        async with APIOrchestrator(config) as orchestrator:
            return await orchestrator.map(rows, fields=[], client=dask_client)

    out = asyncio.run(go())
    assert list(out["status"]) == ["ok", "failed", "failed", "ok"]
    assert "503" in out["error"][1] and "s" in out["error"][1]
    assert len(demo.log) == 4


def test_unshared_limits_are_refused_before_anything_is_sent(
    demo: DemoServer, dask_client: object
) -> None:
    async def go() -> None:
        async with APIOrchestrator(_config(demo)) as orchestrator:
            await orchestrator.map([{"id": 1}], client=dask_client)

    with pytest.raises(ConfigError, match=r"limited per worker.*limiter=.redis://"):
        asyncio.run(go())
    assert demo.log == []


def test_a_client_that_is_not_one_is_refused(demo: DemoServer) -> None:
    async def go() -> None:
        async with APIOrchestrator(_config(demo, rate_limit=None)) as orchestrator:
            await orchestrator.map([{"id": 1}], client=42)

    with pytest.raises(ConfigError, match=r"dask\.distributed Client or .local."):
        asyncio.run(go())


def test_a_timeout_keeps_every_chunk_that_came_back(demo: DemoServer, dask_client: object) -> None:
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="slow", url=demo.url + "/delay/{ms}", retry_count=0)]
    )
    rows = [{"ms": 300}] * 16  # 8 chunks of 2 rows on 2 threads: about 1.2 s in all

    async def go() -> APIOrchestrator:
        orchestrator = APIOrchestrator(config)
        with pytest.raises(MapTimeout) as caught:
            await orchestrator.map(rows, fields=[], client=dask_client, timeout=0.75)
        assert caught.value.map_run is orchestrator.last_map
        await orchestrator.close()
        return orchestrator

    orchestrator = asyncio.run(go())
    assert orchestrator.last_map is not None
    frame = orchestrator.last_map.frame()
    statuses = frame["status"].value_counts().to_dict()
    assert len(frame) == 16 and set(statuses) == {"ok", "cancelled"}
    assert 2 <= statuses["ok"] <= 14
    assert frame.loc[frame["status"] == "cancelled", "error"].str.contains("Dask task").all()


def test_client_local_starts_and_stops_its_own_cluster(demo: DemoServer) -> None:
    async def go() -> pd.DataFrame:
        async with APIOrchestrator(_config(demo, rate_limit=None)) as orchestrator:
            return await orchestrator.map(
                [{"id": i} for i in range(1, 21)], fields={"name": "user.name"}, client="local"
            )

    out = asyncio.run(go())
    assert list(out["name"]) == [f"User {i}" for i in range(1, 21)]
    assert len([r for r in demo.log if r.path.count("/") == 2]) == 20


def test_a_dask_dataframe_without_a_client_is_mapped_in_this_kernel(demo: DemoServer) -> None:
    import dask.dataframe as dd

    ddf = dd.from_pandas(pd.DataFrame({"id": [2, 1]}, index=["b", "a"]), npartitions=2)

    async def go() -> APIOrchestrator:
        async with APIOrchestrator(_config(demo, rate_limit=None)) as orchestrator:
            await orchestrator.map(ddf, fields={"name": "user.name"})
        return orchestrator

    orchestrator = asyncio.run(go())
    assert orchestrator.last_map is not None
    frame = orchestrator.last_map.frame()
    assert frame["name"].to_dict() == {"a": "User 1", "b": "User 2"}
    assert orchestrator.get_metrics().total_requests == 4  # counted in this process

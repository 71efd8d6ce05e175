"""One aiohttp session per orchestrator and loop: reused, closed promptly, never leaked."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import warnings

import pytest

from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator
from apiorch_nb.demo import DemoServer


def _orchestrator(url: str, n: int = 3, mode: str = "parallel") -> APIOrchestrator:
    endpoints = [APIEndpoint(name=f"e{i}", url=f"{url}/delay/5") for i in range(n)]
    return APIOrchestrator(APIOrchestrationConfig(endpoints=endpoints, mode=mode))


async def test_connections_are_reused_across_runs(demo: DemoServer) -> None:
    async with _orchestrator(demo.url, n=1) as orch:
        for _ in range(5):
            await orch.execute()
        session = orch._services.session
        assert session is not None
        connector = session.connector
        assert connector is not None
        # five sequential runs of one call each share one keep-alive connection
        assert sum(len(conns) for conns in connector._conns.values()) == 1
    assert demo.count(prefix="/delay") == 5


async def test_close_is_prompt_and_the_orchestrator_stays_usable(demo: DemoServer) -> None:
    orch = _orchestrator(demo.url)
    await orch.execute()
    started = time.monotonic()
    await orch.close()
    assert time.monotonic() - started < 0.5
    assert await orch.execute() == {f"e{i}": {"delayed_ms": 5} for i in range(3)}
    await orch.close()
    await orch.close()  # closing twice is harmless


async def test_async_with_closes_the_session(demo: DemoServer) -> None:
    async with _orchestrator(demo.url) as orch:
        await orch.execute()
        session = orch._services.session
    assert session is not None and session.closed


def test_reuse_across_asyncio_run_calls_leaves_no_unclosed_session(demo: DemoServer) -> None:
    orch = _orchestrator(demo.url)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = asyncio.run(orch.execute())
        second = asyncio.run(orch.execute())  # a new loop: a new session, the old one closed
        gc.collect()
    assert first == second
    assert demo.count(prefix="/delay") == 6


def test_orchestrator_moves_between_loops_in_different_threads(demo: DemoServer) -> None:
    orch = _orchestrator(demo.url, n=2)
    results: list[object] = []

    def worker() -> None:
        results.append(asyncio.run(orch.execute()))

    for _ in range(2):
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join(timeout=10)
    assert len(results) == 2 and results[0] == results[1]


async def test_dropping_an_unclosed_orchestrator_closes_its_session_on_its_loop(
    demo: DemoServer,
) -> None:
    orch = _orchestrator(demo.url, n=1)
    await orch.execute()
    session = orch._services.session
    assert session is not None
    del orch
    gc.collect()
    for _ in range(20):  # the loop runs the session keeper's finaliser soon after
        if session.closed:
            break
        await asyncio.sleep(0.01)
    assert session.closed


@pytest.mark.parametrize("mode", ["sequential", "parallel", "pipeline", "hybrid"])
async def test_concurrent_executes_on_one_orchestrator_share_the_session(
    demo: DemoServer, mode: str
) -> None:
    async with _orchestrator(demo.url, n=2, mode=mode) as orch:
        outs = await asyncio.gather(*(orch.execute() for _ in range(4)))
    assert all(o == outs[0] for o in outs)
    assert demo.count(prefix="/delay") == 8

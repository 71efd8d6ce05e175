"""The two contenders timed inside `run.py`'s own process: plain aiohttp and apiorch_nb.

Both keep one client session for all of a scenario's runs (apiorch_nb keeps it inside the
orchestrator), so the timed runs compare warm connection pools. Neither retries:
apiorch_nb endpoints get ``retry_count=0``, and the server's counts would show any extra
request anyway.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from _harness import Scenario

from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, OrchestrationMode

if TYPE_CHECKING:
    import pandas as pd


class PlainAiohttp:
    """The floor: one ClientSession; a loop, a gather, or a semaphore-bounded gather."""

    name = "plain aiohttp"

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._urls: list[str] = []
        self._concurrency = 1

    async def open(self, base_url: str, scenario: Scenario) -> None:
        self._session = aiohttp.ClientSession()
        self._urls = scenario.urls(base_url)
        self._concurrency = scenario.concurrency

    async def _get(self, url: str) -> bool:
        assert self._session is not None
        async with self._session.get(url) as resp:
            await resp.json()
            return resp.status == 200

    async def run(self) -> int:
        if self._concurrency == 1:
            return sum([await self._get(url) for url in self._urls])
        if self._concurrency >= len(self._urls):
            return sum(await asyncio.gather(*(self._get(url) for url in self._urls)))
        slots = asyncio.Semaphore(self._concurrency)

        async def bounded(url: str) -> bool:
            async with slots:
                return await self._get(url)

        return sum(await asyncio.gather(*(bounded(url) for url in self._urls)))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class ApiorchNb:
    """One orchestrator per scenario, its config built from the scenario's URLs.

    A ``rows`` scenario (`map`) gets one endpoint whose URL is the scenario's route, ``{i}``
    filled from column ``i`` of a DataFrame built in `open`, outside the timed run.
    """

    name = "apiorch_nb"

    def __init__(self) -> None:
        self._orchestrator: APIOrchestrator | None = None
        self._urls: list[str] = []
        self._mode = OrchestrationMode.SEQUENTIAL
        self._max_concurrent = 1
        self._map_url = ""
        self._table: pd.DataFrame | None = None

    def _build(self) -> APIOrchestrator:
        if self._table is not None:
            endpoints = [APIEndpoint(name="c", url=self._map_url, retry_count=0)]
        else:
            endpoints = [
                APIEndpoint(name=f"c{i}", url=url, retry_count=0)
                for i, url in enumerate(self._urls)
            ]
        config = APIOrchestrationConfig(
            endpoints=endpoints, mode=self._mode, max_concurrent=self._max_concurrent
        )
        return APIOrchestrator(config)

    async def open(self, base_url: str, scenario: Scenario) -> None:
        self._urls = scenario.urls(base_url)
        self._table = None
        if scenario.rows:
            import pandas as pd

            self._map_url = base_url + scenario.route
            self._table = pd.DataFrame({"i": range(scenario.calls)})
        if scenario.concurrency == 1:
            self._mode, self._max_concurrent = OrchestrationMode.SEQUENTIAL, 1
        else:
            self._mode, self._max_concurrent = OrchestrationMode.PARALLEL, scenario.concurrency
        self._orchestrator = self._build()

    async def run(self) -> int:
        assert self._orchestrator is not None
        if self._table is not None:
            frame = await self._orchestrator.map(self._table)
            return int((frame["status"] == "ok").sum())
        await self._orchestrator.execute()
        run = self._orchestrator.last_run
        return run.outcomes.get("ok", 0) if run is not None else 0

    def time_build(self) -> float | None:
        """Seconds to build the config and orchestrator alone (no session until execute);
        None for `map`, whose config is one endpoint."""
        if self._table is not None:
            return None
        start = time.perf_counter()
        self._build()
        return time.perf_counter() - start

    async def close(self) -> None:
        if self._orchestrator is not None:
            await self._orchestrator.close()


async def apiorch_mode_run(mode: str, urls: list[str]) -> Any:
    """One small orchestration in `mode`, for the mode check."""
    endpoints = [APIEndpoint(name=f"m{i}", url=url, retry_count=0) for i, url in enumerate(urls)]
    config = APIOrchestrationConfig(endpoints=endpoints, mode=OrchestrationMode[mode])
    async with APIOrchestrator(config) as orchestrator:
        return await orchestrator.execute()

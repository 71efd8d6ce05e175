"""Times dataknobs-fsm 0.1.14's API orchestrator; run by `run.py` inside bench/.venv-dataknobs.

dataknobs-fsm pulls in about forty packages (pandas, numpy, nltk, lxml, psycopg2,
pydantic, ...), so it lives in its own venv and this script is its client process. It uses
the same `_harness` loop as `run.py` and writes its measurements as JSON to ``--out``.

What the installed source does, and how this script copes:

- There is no ``execute()``; ``orchestrate()`` is the entry point, and its result also
  holds a ``"_metrics"`` entry. A failed call is swallowed and shows up as ``None``.
- PARALLEL and FANOUT build coroutines and then await them one after another.
  ``max_concurrent`` is stored and never read.
- CONDITIONAL and HYBRID fall through every branch of ``orchestrate()``: no request.
- Each endpoint gets its own provider with its own ClientSession, opened on first use.
- There is no ``map`` (one run per row of a table): the map scenario's row says
  ``n/a: no map`` and nothing is sent.
- ``close()`` sleeps 0.25 s per provider, one provider after another (12.5 s for 50
  endpoints, over 8 minutes for 2,000), so this script closes the providers concurrently.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.metadata
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from _harness import (
    SCENARIOS,
    DemoProbe,
    Measurement,
    Scenario,
    audit,
    count_by_mode,
    measure,
)
from dataknobs_common.ratelimit import InMemoryRateLimiter, RateLimit, RateLimiterConfig
from dataknobs_fsm.patterns import api_orchestration as dk

SPEC_METHODS = ("execute", "get_metrics", "clear_cache", "clear_all_cache", "close")
SPEC_FACTORIES = ("create_sequential_api_chain", "create_parallel_aggregator")
LIMITER_SIZES = (200, 2000)
LIMITER_RUNS = 5
#: The row for a `map` scenario: dataknobs-fsm has nothing that runs a graph once per row.
NO_MAP = "n/a: no map"


class DataknobsFsm:
    """dataknobs-fsm's APIOrchestrator, configured exactly like apiorch_nb's."""

    name = "dataknobs-fsm"

    def __init__(self) -> None:
        self._orchestrator: Any = None
        self._urls: list[str] = []
        self._mode: Any = dk.OrchestrationMode.SEQUENTIAL
        self._max_concurrent = 1

    def _build(self) -> Any:
        endpoints = [
            dk.APIEndpoint(name=f"c{i}", url=url, retry_count=0) for i, url in enumerate(self._urls)
        ]
        config = dk.APIOrchestrationConfig(
            endpoints=endpoints, mode=self._mode, max_concurrent=self._max_concurrent
        )
        return dk.APIOrchestrator(config)

    async def open(self, base_url: str, scenario: Scenario) -> None:
        self._urls = scenario.urls(base_url)
        if scenario.concurrency == 1:
            self._mode, self._max_concurrent = dk.OrchestrationMode.SEQUENTIAL, 1
        else:
            self._mode, self._max_concurrent = dk.OrchestrationMode.PARALLEL, scenario.concurrency
        self._orchestrator = self._build()

    async def run(self) -> int:
        results = await self._orchestrator.orchestrate()
        return sum(1 for k, v in results.items() if k.startswith("c") and v is not None)

    def time_build(self) -> float:
        start = time.perf_counter()
        self._build()
        return time.perf_counter() - start

    async def close(self) -> None:
        if self._orchestrator is not None:
            await close_providers(self._orchestrator)


async def close_providers(orchestrator: Any) -> None:
    providers = [p for p in orchestrator._providers.values() if p.is_open]
    await asyncio.gather(*(p.close() for p in providers))


async def mode_run(mode: str, urls: list[str]) -> Any:
    endpoints = [dk.APIEndpoint(name=f"m{i}", url=url, retry_count=0) for i, url in enumerate(urls)]
    orchestrator = dk.APIOrchestrator(
        dk.APIOrchestrationConfig(endpoints=endpoints, mode=dk.OrchestrationMode[mode])
    )
    try:
        return await orchestrator.orchestrate()
    finally:
        await close_providers(orchestrator)


async def limiter_cost(n: int) -> float:
    """Microseconds per uncontended acquire when `n` admissions fill one window."""
    rates = [RateLimit(limit=10 * n, interval=3600)]
    config = RateLimiterConfig(default_rates=rates, categories={"api": rates})
    limiter = InMemoryRateLimiter(config)
    start = time.perf_counter()
    for _ in range(n):
        await limiter.acquire("api")
    return (time.perf_counter() - start) / n * 1e6


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"measurements": [], "limiter": {}}
    async with aiohttp.ClientSession() as control:
        probe = DemoProbe(control, args.url)
        audit_probe = DemoProbe(control, args.audit_url)
        for key in args.scenarios:
            scenario = SCENARIOS[key]
            if scenario.rows:
                m = Measurement(key, DataknobsFsm.name, scenario.calls, error=NO_MAP)
                out["measurements"].append(dataclasses.asdict(m))
                continue
            m = (await measure([DataknobsFsm()], scenario, probe, args.runs))[DataknobsFsm.name]
            m.audit = await audit(DataknobsFsm(), scenario, audit_probe)
            out["measurements"].append(dataclasses.asdict(m))
        out["modes"] = await count_by_mode(audit_probe, mode_run)
    try:
        for n in LIMITER_SIZES:
            out["limiter"][str(n)] = [await limiter_cost(n) for _ in range(LIMITER_RUNS)]
    except Exception as exc:  # the orchestration numbers above still count
        out["limiter_error"] = f"{type(exc).__name__}: {exc}"
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--audit-url", required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    result = asyncio.run(main_async(args))
    result["version"] = importlib.metadata.version("dataknobs-fsm")
    result["aiohttp"] = aiohttp.__version__
    result["python"] = sys.version.split()[0]
    result["missing_spec_api"] = [m for m in SPEC_METHODS if not hasattr(dk.APIOrchestrator, m)]
    result["missing_spec_api"] += [f for f in SPEC_FACTORIES if not hasattr(dk, f)]
    result["worker_s"] = time.perf_counter() - started
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a cache hit costs per backend: ``python bench/cache_cost.py``.

One PARALLEL config of 2,000 GET endpoints (``/data/h{i}``, ``max_concurrent=100``) is run
once to fill the cache, then timed over `--runs` more runs in which every call is a hit;
the table shows the median and best wall time per hit in microseconds, the ratio to the
in-memory cache, and the median cost of the backend's own ``get`` called one at a time with
no engine around it, for scale.

The backends are the in-memory cache, `SqliteCache` in a temporary file, and `RedisCache`
on a redis-server this script starts on a free loopback port (skipped, with a note, when
``redis-server`` is not installed). The demo API serves the filling run from a thread of
this process and sits idle while hits are timed; afterwards its log must show exactly one
request per endpoint, or the row is flagged. With two or more CPUs, redis-server is pinned
to one core and this process to another.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _processes import plan_cpus

from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, CallState
from apiorch_nb.backends import RedisCache, SqliteCache
from apiorch_nb.cache import Cache, MemoryCache
from apiorch_nb.demo import DemoServer, LocalRedis

CALLS = 2000
CONCURRENCY = 100
RUNS = 5
#: Calls of the backend's own ``get`` timed per run for the "get alone" column.
GETS = 2000


@dataclass
class Row:
    backend: str
    per_hit_us: list[float]
    get_us: list[float]
    note: str = ""


def _config(base_url: str) -> APIOrchestrationConfig:
    endpoints = [
        APIEndpoint(f"h{i}", f"{base_url}/data/h{i}", retry_count=0, cache_ttl=600)
        for i in range(CALLS)
    ]
    return APIOrchestrationConfig(endpoints=endpoints, max_concurrent=CONCURRENCY)


async def _timed(run: Callable[[], Awaitable[Any]], count: int, runs: int) -> list[float]:
    """Microseconds per item of `runs` timed calls of `run` (each handles `count` items)."""
    out = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        await run()
        out.append((time.perf_counter() - start) / count * 1e6)
    return out


async def measure(name: str, cache: Cache, api: DemoServer, runs: int) -> Row:
    """Fill `cache` with one run, then time `runs` runs of nothing but hits."""
    api.reset()
    async with APIOrchestrator(_config(api.url), cache=cache) as orchestrator:
        await orchestrator.execute()
        per_hit = await _timed(orchestrator.execute, CALLS, runs)
        run = orchestrator.last_run
        assert run is not None
        hits = sum(r.state is CallState.CACHED for r in run.records.values())
    note = ""
    if hits != CALLS or api.count(prefix="/data/h") != CALLS:
        note = f"FLAGGED: {hits} of {CALLS} hits, server saw {api.count(prefix='/data/h')}"
    get_us = await _timed(_get_loop(cache), GETS, runs)
    return Row(name, per_hit, get_us, note)


def _get_loop(cache: Cache) -> Callable[[], Awaitable[None]]:
    """`GETS` lookups of one stored key through the backend's own get."""
    from apiorch_nb._http import Response

    async def run() -> None:
        get = cache.get
        for _ in range(GETS):
            value = get("h0", "bench-key")
            if not isinstance(value, Response) and value is not None:
                value = await value
            assert value is not None

    return run


async def _store_probe(cache: Cache) -> None:
    from multidict import CIMultiDict

    from apiorch_nb._http import Response

    body = b'{"source": "h0", "value": 2}'
    headers = CIMultiDict({"Content-Type": "application/json; charset=utf-8"})
    pending = cache.set("h0", "bench-key", Response(200, headers, body, "u"), 600)
    if pending is not None:
        await pending


def table(rows: list[Row], skipped: list[str]) -> str:
    base = statistics.median(rows[0].per_hit_us)
    lines = [
        "| backend | µs per hit (median) | best | vs memory | its get alone, one at a time (µs) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        median = statistics.median(row.per_hit_us)
        lines.append(
            f"| {row.backend} | {median:.1f} | {min(row.per_hit_us):.1f} | {median / base:.2f}x "
            f"| {statistics.median(row.get_us):.1f} |" + (f" {row.note}" if row.note else "")
        )
    lines += [f"| {name} | skipped: redis-server is not installed | | | |" for name in skipped]
    return "\n".join(lines)


async def main(runs: int, redis_url: str | None, workdir: Path) -> str:
    backends: list[tuple[str, Cache]] = [("memory", MemoryCache())]
    sqlite = SqliteCache(workdir / "bench.db")
    backends.append(("sqlite", sqlite))
    if redis_url is not None:
        backends.append(("redis", RedisCache(redis_url)))
    rows = []
    with DemoServer() as api:
        for name, cache in backends:
            await _store_probe(cache)
            rows.append(await measure(name, cache, api, runs))
    sqlite.close()
    return table(rows, [] if redis_url is not None else ["redis"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=RUNS, help="timed runs per backend")
    args = parser.parse_args()
    redis_cpu, _, _ = plan_cpus()  # pins this process; Redis gets the other CPU
    redis = LocalRedis(cpu=redis_cpu) if LocalRedis.available() else None
    with tempfile.TemporaryDirectory() as tmp, redis or nullcontext():
        url = f"{redis.url}?prefix=bench" if redis is not None else None
        print(
            f"{CALLS} cached GETs per run through APIOrchestrator.execute "
            f"(max_concurrent={CONCURRENCY}), {args.runs} runs; Python {sys.version.split()[0]}"
        )
        print(asyncio.run(main(args.runs, url, Path(tmp))))

"""Cost of an uncontended admission: the limiter's fast path, no future and no timer.

Run with ``python bench/bench_limiter.py``. Each case admits 100,000 requests in one event
loop against a limit far above that, five times; the table shows the median and the best run
in microseconds per admission. aiolimiter's ``AsyncLimiter`` is timed for reference only if
it happens to be installed (it is not a dependency).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apiorch_nb.ratelimit import (
    InMemoryRateLimiter,
    RateLimit,
    RateLimiterConfig,
)

N = 100_000
RUNS = 5
Case = Callable[[], Awaitable[float]]


def _limiter() -> InMemoryRateLimiter:
    config = RateLimiterConfig(categories={"api": [RateLimit(limit=10 * N, interval=3600)]})
    return InMemoryRateLimiter(config)


async def bench_acquire() -> float:
    limiter = _limiter()
    start = time.perf_counter()
    for _ in range(N):
        await limiter.acquire("api")
    return time.perf_counter() - start


async def bench_permit_settle() -> float:
    limiter = _limiter()
    categories = ["api"]
    start = time.perf_counter()
    for _ in range(N):
        permit = await limiter.acquire_permit(categories)
        permit.settle()
    return time.perf_counter() - start


async def bench_permit_two_categories() -> float:
    limiter = _limiter()
    limiter.configure("global", [RateLimit(limit=10 * N, interval=3600)])
    categories = ["api", "global"]
    start = time.perf_counter()
    for _ in range(N):
        permit = await limiter.acquire_permit(categories)
        permit.settle()
    return time.perf_counter() - start


def _aiolimiter_case() -> Case | None:
    try:
        from aiolimiter import AsyncLimiter
    except ImportError:
        return None

    async def bench_aiolimiter() -> float:
        limiter = AsyncLimiter(max_rate=10 * N, time_period=3600)
        start = time.perf_counter()
        for _ in range(N):
            await limiter.acquire()
        return time.perf_counter() - start

    return bench_aiolimiter


def main() -> None:
    cases: list[tuple[str, Case]] = [
        ("acquire", bench_acquire),
        ("acquire_permit + settle", bench_permit_settle),
        ("acquire_permit + settle, 2 categories", bench_permit_two_categories),
    ]
    reference = _aiolimiter_case()
    if reference is not None:
        cases.append(("aiolimiter AsyncLimiter.acquire (reference)", reference))

    print(f"{N:,} uncontended admissions per run, {RUNS} runs, Python {sys.version.split()[0]}")
    width = max(len(name) for name, _ in cases)
    print(f"{'case':<{width}}  {'median µs':>10}  {'best µs':>8}")
    for name, case in cases:
        per_op = [asyncio.run(case()) / N * 1e6 for _ in range(RUNS)]
        print(f"{name:<{width}}  {statistics.median(per_op):>10.3f}  {min(per_op):>8.3f}")
    if reference is None:
        print("(aiolimiter not installed: reference row skipped)")


if __name__ == "__main__":
    main()

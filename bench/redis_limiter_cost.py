"""Cost of an uncontended admission through `RedisRateLimiter`, next to a plain PING.

Run with ``python bench/redis_limiter_cost.py``. It starts its own redis-server on a free
loopback port (no persistence), then times, in one event loop, ``N`` sequential operations
per run, five runs: ``PING`` on a redis.asyncio client (the floor: one local round trip),
the admission script sent on its own, ``acquire()``, ``acquire_permit()`` + ``settle()``
(the settles run in the background and are waited for inside the timing), and a permit
charged against two categories. The limit is far above ``N`` per window, so nothing
waits. The target is "about one local round trip" per acquire: the table shows each
row's median as a multiple of PING's.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apiorch_nb.backends import RedisRateLimiter
from apiorch_nb.demo import LocalRedis
from apiorch_nb.ratelimit import RateLimit

N = 2_000
RUNS = 5
Case = Callable[[str], Awaitable[float]]


def redis_server() -> LocalRedis:
    """A throwaway redis-server on a free 127.0.0.1 port; exits if none is installed."""
    if not LocalRedis.available():
        sys.exit("redis-server is not installed (apt-get install -y redis-server)")
    return LocalRedis()


def _limiter(url: str) -> RedisRateLimiter:
    limiter = RedisRateLimiter(url)
    for category in ("api", "global"):
        limiter.configure(category, [RateLimit(limit=100 * N, interval=1.0)])
    return limiter


async def bench_ping(url: str) -> float:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    await client.ping()  # connect outside the timing
    start = time.perf_counter()
    for _ in range(N):
        await client.ping()
    elapsed = time.perf_counter() - start
    await client.aclose()
    return elapsed


async def bench_admit_script(url: str) -> float:
    """The admission script alone, as redis-py sends it: what acquire() adds nothing to."""
    from redis.asyncio import Redis

    from apiorch_nb.backends._redis_limiter_lua import ADMIT

    client = Redis.from_url(url)
    script = client.register_script(ADMIT)
    rate = [100 * N, 1_000_000]
    await script(keys=["bench"], args=[1, 0, "warm", 5000, *rate])
    start = time.perf_counter()
    for i in range(N):
        await script(keys=["bench"], args=[1, 0, f"m{i}", 5000, *rate])
    elapsed = time.perf_counter() - start
    await client.aclose()
    return elapsed


async def bench_acquire(url: str) -> float:
    limiter = _limiter(url)
    await limiter.acquire("api")  # connect and load the script outside the timing
    start = time.perf_counter()
    for _ in range(N):
        await limiter.acquire("api")
    elapsed = time.perf_counter() - start
    await limiter.aclose()
    return elapsed


async def _permits(url: str, categories: list[str]) -> float:
    limiter = _limiter(url)
    (await limiter.acquire_permit(categories)).settle()
    await limiter.aclose()  # lands that settle; the next call reconnects
    (await limiter.acquire_permit(categories)).release()
    start = time.perf_counter()
    for _ in range(N):
        permit = await limiter.acquire_permit(categories)
        permit.settle()
    await asyncio.gather(*list(limiter._tasks))  # the background settles, inside the timing
    elapsed = time.perf_counter() - start
    await limiter.aclose()
    return elapsed


async def bench_permit_settle(url: str) -> float:
    return await _permits(url, ["api"])


async def bench_permit_two_categories(url: str) -> float:
    return await _permits(url, ["api", "global"])


CASES: list[tuple[str, Case]] = [
    ("PING (redis.asyncio, for reference)", bench_ping),
    ("EVALSHA of the admission script alone", bench_admit_script),
    ("acquire()", bench_acquire),
    ("acquire_permit() + settle()", bench_permit_settle),
    ("acquire_permit(endpoint + global) + settle()", bench_permit_two_categories),
]


def main() -> None:
    with redis_server() as server, closing(redis.Redis.from_url(server.url)) as control:
        rows = []
        for name, case in CASES:
            per_op = []
            for _ in range(RUNS):
                per_op.append(asyncio.run(case(server.url)) / N * 1e6)
                control.flushall()  # each run starts from empty windows
            rows.append((name, statistics.median(per_op), min(per_op), max(per_op)))
    ping = rows[0][1]
    print(f"Redis limiter cost per operation ({N} sequential ops per run, {RUNS} runs)\n")
    print("| operation | median µs | min µs | max µs | vs PING |")
    print("|---|---|---|---|---|")
    for name, median, low, high in rows:
        print(f"| {name} | {median:.1f} | {low:.1f} | {high:.1f} | {median / ping:.2f}x |")


if __name__ == "__main__":
    main()

"""Where a client's CPU goes in a throughput scenario: ``python bench/profile_throughput.py``.

``--scenario map`` profiles the 10,000-row ``map`` instead of the 2,000-call execute.

For plain aiohttp and apiorch_nb, against a ``--no-log`` demo server in its own process
(pinned like ``run.py`` pins it), this prints CPU microseconds per call with the garbage
collector on and off, the collector's own share, and then the apiorch_nb functions that
cProfile charges the most own time to. cProfile slows small functions down more than big
ones, so read its column as a ranking, and the CPU columns as the real cost. For an
unbiased picture use a sampling profiler on the same workload, e.g.
``py-spy record -f raw -- python bench/profile_throughput.py --runs 30 --no-cprofile``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
import time
from typing import Any

from _contenders import ApiorchNb, PlainAiohttp
from _harness import SCENARIOS, Contender, Scenario
from _processes import BENCH, DemoServerProcess, plan_cpus


class GcClock:
    """Seconds the cyclic garbage collector ran, via `gc.callbacks`."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._start


async def cpu_per_call(
    contender: Contender, scenario: Scenario, runs: int, collect: bool
) -> tuple[float, float]:
    """(CPU µs per call, GC µs per call) over `runs` runs of the scenario."""
    clock = GcClock()
    gc.collect()
    gc.callbacks.append(clock)
    if not collect:
        gc.disable()
    start = time.process_time()
    try:
        for _ in range(runs):
            await contender.run()
    finally:
        gc.enable()
        gc.callbacks.remove(clock)
    calls = runs * scenario.calls
    return (time.process_time() - start) / calls * 1e6, clock.total / calls * 1e6


async def profile(url: str, scenario: Scenario, runs: int, use_cprofile: bool) -> None:
    print(f"{scenario.title}, {runs} runs per row; µs of client CPU per call")
    print(f"{'contender':<14} {'GC on':>8} {'GC off':>8} {'in GC':>8}")
    contenders: list[Contender] = [PlainAiohttp(), ApiorchNb()]
    for c in contenders:
        await c.open(url, scenario)
        await c.run()  # warm-up
        on, in_gc = await cpu_per_call(c, scenario, runs, collect=True)
        off, _ = await cpu_per_call(c, scenario, runs, collect=False)
        print(f"{c.name:<14} {on:>8.1f} {off:>8.1f} {in_gc:>8.1f}")
    if use_cprofile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(runs):
            await contenders[1].run()
        profiler.disable()
        print_own_time(profiler, runs * scenario.calls)
    for c in contenders:
        await c.close()


def print_own_time(profiler: cProfile.Profile, calls: int, top: int = 20) -> None:
    stats = pstats.Stats(profiler)
    rows = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in rows.values())
    ours = sorted(
        (
            (tt, f"{func} ({path.rsplit('/apiorch_nb/', 1)[-1]}:{line})")
            for (path, line, func), (_, _, tt, _, _) in rows.items()
            if "/apiorch_nb/" in path
        ),
        reverse=True,
    )
    share = sum(tt for tt, _ in ours) / total if total else 0.0
    print(f"\ncProfile: apiorch_nb's own code is {share:.0%} of profiled time; top functions")
    print(f"{'share':>6} {'µs/call':>8}  function")
    for tt, name in ours[:top]:
        print(f"{tt / total:>6.1%} {tt / calls * 1e6:>8.2f}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--no-cprofile", action="store_true")
    throughput = [key for key, scenario in SCENARIOS.items() if scenario.throughput]
    parser.add_argument("--scenario", choices=throughput, default="throughput")
    args = parser.parse_args()
    server_cpu, _, pinning = plan_cpus()
    print(pinning)
    server = DemoServerProcess(
        log_requests=False, cpu=server_cpu, stderr_path=BENCH / "results" / "demo-profile.log"
    )
    try:
        asyncio.run(
            profile(server.start(), SCENARIOS[args.scenario], args.runs, not args.no_cprofile)
        )
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

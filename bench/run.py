"""apiorch_nb side by side with plain aiohttp and dataknobs-fsm 0.1.14: ``make bench``.

Starts two demo servers in their own processes (``--no-log`` for timing, a logging one for
the audit runs), times plain aiohttp and apiorch_nb interleaved in this process, has the
dataknobs-fsm worker time its orchestrator from its own venv with the same harness, and
times the rate limiter with bench/bench_limiter.py's cases. Prints a markdown table and
writes it, with every raw number, to bench/results/latest.json. See bench/README.md.

    python bench/run.py [--runs 7] [--scenarios parallel sequential throughput]
                        [--no-dataknobs] [--strict]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import importlib.metadata
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from _contenders import ApiorchNb, PlainAiohttp, apiorch_mode_run
from _harness import (
    MODE_CHECK_CALLS,
    SCENARIOS,
    DemoProbe,
    Measurement,
    audit,
    count_by_mode,
    measure,
)
from _processes import (
    BENCH,
    DemoServerProcess,
    ensure_dataknobs_venv,
    plan_cpus,
    run_dataknobs_worker,
)
from _report import Row, limiter_rows, markdown, modes_markdown, scenario_rows

RESULTS = BENCH / "results"
DATAKNOBS = "dataknobs-fsm"
#: bench_limiter.py's cases, by the function name it gives them; the first carries the target.
LIMITER_CASES = {
    "acquire()": "bench_acquire",
    "acquire_permit() + settle()": "bench_permit_settle",
    "acquire_permit() + settle(), 2 categories": "bench_permit_two_categories",
}

BUSY_WARNING = "; other processes were using the CPUs, so expect noise"

Measurements = dict[str, dict[str, Measurement]]


async def run_here(
    url: str, audit_url: str, keys: list[str], runs: int
) -> tuple[Measurements, Any]:
    """Time plain aiohttp and apiorch_nb in this process; audit each; check the modes."""
    out: Measurements = {}
    async with aiohttp.ClientSession() as control:
        probe, audit_probe = DemoProbe(control, url), DemoProbe(control, audit_url)
        for key in keys:
            scenario = SCENARIOS[key]
            out[key] = await measure([PlainAiohttp(), ApiorchNb()], scenario, probe, runs)
            for contender in (PlainAiohttp(), ApiorchNb()):
                out[key][contender.name].audit = await audit(contender, scenario, audit_probe)
        modes = await count_by_mode(audit_probe, apiorch_mode_run)
    return out, modes


def run_dataknobs(
    args: argparse.Namespace, url: str, audit_url: str, measurements: Measurements
) -> dict[str, Any]:
    """Run the worker and fold its measurements in; on any failure, say why in every row."""
    info: dict[str, Any] = {}
    try:
        python = ensure_dataknobs_venv(RESULTS / "dataknobs-install.log")
        info = run_dataknobs_worker(
            python, url, audit_url, args.runs, args.scenarios, RESULTS / "dataknobs.json"
        )
    except Exception as exc:  # a missing or broken contender is reported, never fatal
        info = {"error": str(exc)}
    for key in args.scenarios:
        found = [m for m in info.get("measurements", []) if m["scenario"] == key]
        if found:
            measurements[key][DATAKNOBS] = Measurement(**found[0])
        else:
            reason = info.get("error", "worker returned nothing")
            measurements[key][DATAKNOBS] = Measurement(
                key, DATAKNOBS, SCENARIOS[key].calls, error=reason
            )
    return info


def time_limiter() -> dict[str, list[float]] | str:
    """µs per admission for each bench_limiter.py case, or why they could not run."""
    try:
        import bench_limiter
    except Exception as exc:
        return f"bench_limiter.py did not import: {exc}"
    cases: dict[str, Callable[[], Awaitable[float]]] = {
        label: getattr(bench_limiter, fn)
        for label, fn in LIMITER_CASES.items()
        if hasattr(bench_limiter, fn)
    }
    if "acquire()" not in cases:
        return "bench_limiter.py no longer has bench_acquire"
    n, runs = bench_limiter.N, bench_limiter.RUNS
    return {
        label: [asyncio.run(case()) / n * 1e6 for _ in range(runs)] for label, case in cases.items()
    }


def build_rows(
    measurements: Measurements, limiter: dict[str, list[float]] | str, dk: dict[str, Any]
) -> list[Row]:
    rows: list[Row] = []
    for per_contender in measurements.values():
        rows += scenario_rows(per_contender)
    if isinstance(limiter, str):
        rows.append(
            Row(
                "limiter cost per acquire",
                "apiorch_nb acquire()",
                "µs",
                result=f"unavailable: {limiter}",
            )
        )
        return rows
    return rows + limiter_rows(limiter, dk.get("limiter", {}))


def versions(dk: dict[str, Any]) -> dict[str, str]:
    return {
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "apiorch_nb": importlib.metadata.version("apiorch-nb"),
        DATAKNOBS: dk.get("version", f"unavailable: {dk.get('error', 'not run')}"),
    }


def report(
    args: argparse.Namespace, context: dict[str, Any], rows: list[Row], modes: dict[str, Any]
) -> str:
    v = context["versions"]
    load = context["load_average"]
    lines = [
        f"# apiorch_nb benchmark — {context['generated']}",
        "",
        f"Python {v['python']}, aiohttp {v['aiohttp']}, apiorch_nb {v['apiorch_nb']}, "
        f"{DATAKNOBS} {v[DATAKNOBS]}.",
        f"Medians of {args.runs} runs after one warm-up; plain aiohttp and apiorch_nb interleaved "
        f"in one client process, {DATAKNOBS} in its own venv and process (same harness, same "
        f"aiohttp). Demo servers in separate processes, {context['pinning']}.",
        f"Load average {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at end, "
        f"on {os.cpu_count()} CPUs{BUSY_WARNING if context['busy'] else ''}.",
        "",
        markdown(rows),
        "",
        "Requests that reached the server when each contender ran one orchestration per mode:",
        "",
        modes_markdown(modes, MODE_CHECK_CALLS),
    ]
    missing = context.get("dataknobs_missing_api")
    if missing:
        lines += [
            "",
            f"{DATAKNOBS} lacks the spec's {', '.join(missing)}; "
            "it was driven through orchestrate().",
        ]
    lines += ["", f"Wall time {context['wall_s']:.0f} s. JSON: bench/results/latest.json"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per contender (>= 5)")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--no-dataknobs", action="store_true", help="skip the dataknobs-fsm worker")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be >= 5")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    load_start = os.getloadavg()
    server_cpu, _, pinning = plan_cpus()
    servers = [
        DemoServerProcess(
            log_requests=False, cpu=server_cpu, stderr_path=RESULTS / "demo-timing.log"
        ),
        DemoServerProcess(
            log_requests=True, cpu=server_cpu, stderr_path=RESULTS / "demo-audit.log"
        ),
    ]
    dk: dict[str, Any] = {"error": "skipped (--no-dataknobs)"}
    try:
        url, audit_url = servers[0].start(), servers[1].start()
        measurements, apiorch_modes = asyncio.run(
            run_here(url, audit_url, args.scenarios, args.runs)
        )
        if not args.no_dataknobs:
            dk = run_dataknobs(args, url, audit_url, measurements)
    finally:
        for server in servers:
            server.stop()
    limiter = time_limiter()
    rows = build_rows(measurements, limiter, dk)
    modes = {"apiorch_nb": apiorch_modes, DATAKNOBS: dk.get("modes", {})}
    context = {
        "generated": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "versions": versions(dk),
        "pinning": pinning,
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "busy": load_start[0] > 0.5 * (os.cpu_count() or 1),
        "runs": args.runs,
        "dataknobs_missing_api": dk.get("missing_spec_api", []),
        "wall_s": time.perf_counter() - started,
    }
    print(report(args, context, rows, modes))
    RESULTS.mkdir(exist_ok=True)
    document = {
        **context,
        "rows": [dataclasses.asdict(r) for r in rows],
        "modes": modes,
        "limiter": limiter,
        "dataknobs_limiter": dk.get("limiter"),
        "measurements": {
            k: {n: dataclasses.asdict(m) for n, m in v.items()} for k, v in measurements.items()
        },
    }
    (RESULTS / "latest.json").write_text(json.dumps(document, indent=2, default=str))
    missed = [
        r
        for r in rows
        if r.contender.startswith("apiorch_nb") and r.result.startswith(("fail", "FLAG", "unavail"))
    ]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())

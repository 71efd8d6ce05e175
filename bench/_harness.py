"""What every contender is timed with: scenarios, the timing loop, and the server's counts.

This module imports only the standard library and aiohttp, so the dataknobs-fsm worker
(`_dataknobs_worker.py`, which runs in its own venv without apiorch_nb) times its contender
with exactly the same loop as `run.py` times plain aiohttp and apiorch_nb.

The demo server counts what it receives even with ``--no-log``: every request takes the
next sequence number, ``DELETE /_log`` restarts the numbering, and ``POST
/processor/charge`` answers ``txn-<its own sequence number>``. Resetting before a run and
charging after it therefore tells how many requests the run sent, at the cost of two
requests outside the timed region.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

#: Every run sends its requests here and nowhere else.
LOOPBACK_PREFIX = "http://127.0.0.1:"


@dataclass(frozen=True)
class Scenario:
    """One workload: which paths are called, and how many at once the contender may run."""

    key: str
    title: str
    calls: int
    route: str  #: a path with an ``{i}`` placeholder, so every call has its own URL
    concurrency: int  #: 1 means one at a time
    latency_ms: float  #: the server's delay per call, for the concurrency estimate
    throughput: bool = False  #: report calls/s instead of wall time
    #: one endpoint whose URL is `route`, called once per row of a table (``{i}`` is the
    #: row's column): ``APIOrchestrator.map`` instead of one endpoint per call
    rows: bool = False

    def paths(self) -> list[str]:
        return [self.route.format(i=i) for i in range(self.calls)]

    def urls(self, base_url: str) -> list[str]:
        return [base_url + path for path in self.paths()]


SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario("parallel", "PARALLEL 50 x 20 ms", 50, "/delay/20?n={i}", 50, 20.0),
        Scenario("sequential", "SEQUENTIAL 20 x 5 ms", 20, "/delay/5?n={i}", 1, 5.0),
        # /data/{name} is the demo's cheapest route: no timer, one small JSON body.
        Scenario(
            "throughput",
            "2,000 calls, 0 ms, concurrency 100",
            2000,
            "/data/c{i}",
            100,
            0.0,
            throughput=True,
        ),
        Scenario(
            "map",
            "map over 10,000 rows, 0 ms, concurrency 100",
            10_000,
            "/data/c{i}",
            100,
            0.0,
            throughput=True,
            rows=True,
        ),
    )
}

#: Modes the spec names; the mode check runs three endpoints in each.
MODES = ("SEQUENTIAL", "PARALLEL", "FANOUT", "PIPELINE", "CONDITIONAL", "HYBRID")
MODE_CHECK_CALLS = 3


class Contender(Protocol):
    """A client under test. ``open`` may build anything; only ``run`` is timed."""

    name: str

    async def open(self, base_url: str, scenario: Scenario) -> None: ...

    async def run(self) -> int:
        """Make every call of the scenario once; return how many the client saw succeed."""
        ...

    async def close(self) -> None: ...


@dataclass
class Measurement:
    """Everything one contender did in one scenario; JSON-ready via `dataclasses.asdict`."""

    scenario: str
    contender: str
    expected: int
    times_s: list[float] = field(default_factory=list)
    #: CPU seconds the client process used during each timed run (its own overhead)
    cpu_s: list[float] = field(default_factory=list)
    client_ok: list[int] = field(default_factory=list)
    server_requests: list[int | None] = field(default_factory=list)
    build_s: list[float] = field(default_factory=list)
    audit: dict[str, Any] | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


class DemoProbe:
    """Reads what one demo server received, over a session no contender uses."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        if not base_url.startswith(LOOPBACK_PREFIX):
            raise ValueError(f"the demo server must be on 127.0.0.1, got {base_url!r}")
        self.session = session
        self.base_url = base_url

    async def reset(self) -> None:
        async with self.session.delete(f"{self.base_url}/_log") as resp:
            resp.raise_for_status()

    async def received(self) -> int | None:
        """Requests since the last `reset`, or None if the server no longer says."""
        async with self.session.post(f"{self.base_url}/processor/charge", json={}) as resp:
            body = await resp.json()
        txn = str(body.get("transaction_id", ""))
        prefix, _, seq = txn.partition("-")
        if prefix != "txn" or not seq.isdigit():
            return None
        return int(seq) - 1  # the charge itself took the last number

    async def log(self) -> list[dict[str, Any]]:
        """The logged requests (empty on a ``--no-log`` server)."""
        async with self.session.get(f"{self.base_url}/_log") as resp:
            resp.raise_for_status()
            body = await resp.json()
        return list(body["requests"])


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def _timed_run(contender: Contender, probe: DemoProbe, m: Measurement) -> None:
    await probe.reset()
    gc.collect()  # garbage from the previous run is not this run's cost
    cpu_start, start = time.process_time(), time.perf_counter()
    ok = await contender.run()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    m.times_s.append(elapsed)
    m.cpu_s.append(cpu)
    m.client_ok.append(ok)
    m.server_requests.append(await probe.received())


async def measure(
    contenders: Sequence[Contender],
    scenario: Scenario,
    probe: DemoProbe,
    runs: int,
) -> dict[str, Measurement]:
    """Warm every contender up once, then time `runs` runs of each, interleaved.

    Run ``r`` of every contender happens before run ``r + 1`` of any, and the order flips
    on every round, so a slow spell on the machine hits all contenders alike instead of
    whichever one happened to be running. A contender that raises is dropped from the
    remaining rounds and keeps its error.
    """
    results = {c.name: Measurement(scenario.key, c.name, scenario.calls) for c in contenders}
    live: list[Contender] = []
    for c in contenders:
        try:
            await c.open(probe.base_url, scenario)
            await c.run()  # warm-up: connections, caches, first-call imports
            live.append(c)
        except Exception as exc:
            results[c.name].error = _error_text(exc)
    for r in range(runs):
        for c in live if r % 2 == 0 else live[::-1]:
            m = results[c.name]
            if m.error is not None:
                continue
            try:
                await _timed_run(c, probe, m)
                build = getattr(c, "time_build", None)
                built = build() if build is not None else None
                if built is not None:
                    m.build_s.append(built)
            except Exception as exc:
                m.error = _error_text(exc)
    for c in live:
        try:
            await c.close()
        except Exception as exc:
            results[c.name].notes.append(f"close failed: {_error_text(exc)}")
    return results


async def audit(contender: Contender, scenario: Scenario, probe: DemoProbe) -> dict[str, Any]:
    """One cold run against the logging server: what arrived, how spread out, how overlapped.

    ``peak_overlap`` counts the most arrivals inside any window as long as the server's
    delay: with every call held that long, it is how many calls the server had at once.
    """
    try:
        await contender.open(probe.base_url, scenario)
        try:
            await probe.reset()
            ok = await contender.run()
            records = await probe.log()
        finally:
            await contender.close()
    except Exception as exc:
        return {"error": _error_text(exc)}
    arrivals = [r["t"] for r in records]
    keys = [
        r["path"] + "?" + "&".join(f"{k}={v}" for k, v in sorted(r["query"].items()))
        for r in records
    ]
    window = scenario.latency_ms / 1000
    return {
        "client_ok": ok,
        "received": len(records),
        "distinct_urls": len(set(keys)),
        "span_ms": (max(arrivals) - min(arrivals)) * 1000 if arrivals else 0.0,
        "peak_overlap": peak_in_window(arrivals, window) if window > 0 else None,
    }


def peak_in_window(times: Sequence[float], window: float) -> int:
    """The most events inside any half-open window ``[t, t + window)``."""
    ordered = sorted(times)
    best = start = 0
    for end, t_end in enumerate(ordered):
        while t_end - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def count_by_mode(probe: DemoProbe, run_mode: Any) -> dict[str, int | str]:
    """For each spec mode, how many of `MODE_CHECK_CALLS` requests reached the server.

    `run_mode(mode_name, urls)` runs one orchestration; an exception is reported as text.
    """
    counts: dict[str, int | str] = {}
    for mode in MODES:
        urls = [f"{probe.base_url}/data/mode-{mode.lower()}-{i}" for i in range(MODE_CHECK_CALLS)]
        await probe.reset()
        try:
            await asyncio.wait_for(run_mode(mode, urls), timeout=30)
        except Exception as exc:
            counts[mode] = f"error: {_error_text(exc)}"
            continue
        received = await probe.received()
        counts[mode] = received if received is not None else "unknown"
    return counts

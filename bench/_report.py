"""Turns measurements into the table rows, the markdown table and the JSON document.

A row's ``result`` is ``pass`` or ``fail`` against its target, ``baseline`` for plain
aiohttp, ``info`` where no target applies, ``FLAGGED: ...`` when the server did not
receive exactly the requests asked for (a flagged row never passes, however fast), or
``unavailable: <reason>`` when the contender could not run, or ``n/a: <reason>`` when the
scenario does not apply to it (dataknobs-fsm has no ``map``).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from _harness import SCENARIOS, Measurement

BASELINE = "plain aiohttp"
#: Time ratio vs plain aiohttp that the PARALLEL scenario must stay within.
PARALLEL_MAX_RATIO = 1.3
#: Share of plain aiohttp's throughput the 2,000-call and the map scenarios must reach.
THROUGHPUT_MIN_SHARE = 0.85
#: How a contender's `Measurement.error` says the scenario does not apply to it (dataknobs-fsm
#: has no map); the row shows it as its result instead of ``unavailable: ...``.
NOT_APPLICABLE = "n/a: "
#: Microseconds one uncontended limiter acquire may cost.
LIMITER_MAX_US = 10.0


@dataclass
class Row:
    scenario: str
    contender: str
    unit: str
    median: float | None = None
    min: float | None = None
    max: float | None = None
    ratio: float | None = None  #: time / baseline time, or throughput / baseline throughput
    target: str = "—"
    result: str = "info"
    requests: str = ""
    cpu_us_per_call: float | None = None  #: median client CPU per call
    cpu_ratio: float | None = None  #: against plain aiohttp's
    notes: str = ""


def _stats(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _requests_cell(m: Measurement) -> tuple[str, str | None]:
    """The requests column, and a flag when any run sent other than what was asked."""
    counts = m.server_requests
    if not counts:
        return "", None
    if any(c is None for c in counts):
        return "unknown", None
    known = [c for c in counts if c is not None]
    lo, hi = min(known), max(known)
    span = f"{lo}" if lo == hi else f"{lo}–{hi}"
    cell = f"{span} of {m.expected} ({len(known)} runs)"
    if lo < m.expected:
        return cell, f"FLAGGED: sent {span} of {m.expected} requests per run"
    if hi > m.expected:
        return cell, f"FLAGGED: sent {span} requests for {m.expected} calls"
    return cell, None


def _audit_notes(m: Measurement, concurrency: int) -> list[str]:
    a = m.audit or {}
    if "error" in a:
        return [f"audit run failed: {a['error']}"]
    notes = []
    peak = a.get("peak_overlap")
    if peak is not None:
        notes.append(f"server saw up to {peak} calls at once (asked {concurrency})")
        if peak == 1 and concurrency > 1:
            notes.append("ran one call at a time")
    if a and a.get("distinct_urls") != m.expected:
        notes.append(f"audit: {a.get('distinct_urls')} distinct URLs of {m.expected}")
    return notes


def scenario_rows(measurements: dict[str, Measurement]) -> list[Row]:
    """Rows for one scenario, baseline first; ratios against the baseline's median."""
    key = next(iter(measurements.values())).scenario
    scenario = SCENARIOS[key]
    base = measurements.get(BASELINE)
    base_value = _value(base, scenario.throughput) if base and not base.error else None
    base_cpu = _cpu_per_call(base) if base and not base.error else None
    rows = []
    for m in measurements.values():
        row = _contender_row(m, scenario.throughput, base_value)
        row.cpu_us_per_call = _cpu_per_call(m)
        if base_cpu and row.cpu_us_per_call is not None:
            row.cpu_ratio = row.cpu_us_per_call / base_cpu
        _judge(row, m, key)
        rows.append(row)
        if m.build_s and scenario.throughput and not m.error:
            rows.append(_build_row(m, base_value))
    return rows


def _cpu_per_call(m: Measurement) -> float | None:
    if not m.cpu_s:
        return None
    return statistics.median(m.cpu_s) / m.expected * 1e6


def _value(m: Measurement, throughput: bool) -> float:
    values = [m.expected / t for t in m.times_s] if throughput else [t * 1000 for t in m.times_s]
    return statistics.median(values)


def _contender_row(m: Measurement, throughput: bool, base: float | None) -> Row:
    scenario = SCENARIOS[m.scenario]
    row = Row(scenario.title, m.contender, "calls/s" if throughput else "ms")
    if m.error is not None and not m.times_s:
        not_applicable = m.error.startswith(NOT_APPLICABLE)
        row.result = m.error if not_applicable else f"unavailable: {m.error}"
        return row
    values = [m.expected / t for t in m.times_s] if throughput else [t * 1000 for t in m.times_s]
    row.median, row.min, row.max = _stats(values)
    if base:
        row.ratio = row.median / base
    row.requests, flag = _requests_cell(m)
    notes = list(m.notes) + _audit_notes(m, scenario.concurrency)
    ok_low = [n for n in m.client_ok if n < m.expected]
    if ok_low:
        notes.append(f"client saw only {min(ok_low)} of {m.expected} succeed in a run")
    if m.error is not None:
        notes.append(f"stopped early: {m.error}")
    row.notes = "; ".join(notes)
    if flag:
        row.result = flag
    return row


def _judge(row: Row, m: Measurement, key: str) -> None:
    if m.contender == BASELINE:
        if row.result == "info":
            row.result = "baseline"
        return
    if key == "parallel":
        row.target = f"<= {PARALLEL_MAX_RATIO}x plain"
        passed = row.ratio is not None and row.ratio <= PARALLEL_MAX_RATIO
    elif SCENARIOS[key].throughput:
        row.target = f">= {THROUGHPUT_MIN_SHARE:.0%} of plain"
        passed = row.ratio is not None and row.ratio >= THROUGHPUT_MIN_SHARE
    else:
        return
    if row.result == "info" and row.ratio is not None:  # flagged rows never pass
        row.result = "pass" if passed else "fail"


def _build_row(m: Measurement, base_tput: float | None) -> Row:
    row = Row(SCENARIOS[m.scenario].title, f"{m.contender}: build config + orchestrator", "ms")
    row.median, row.min, row.max = _stats([t * 1000 for t in m.build_s])
    one_shot = m.expected / (statistics.median(m.times_s) + statistics.median(m.build_s))
    row.notes = f"not in the timed execute; build + execute = {one_shot:,.0f} calls/s"
    if base_tput:
        row.notes += f" ({one_shot / base_tput:.0%} of plain)"
    return row


def limiter_rows(cases: dict[str, list[float]], dataknobs: dict[str, list[float]]) -> list[Row]:
    """Rows for the limiter: apiorch_nb's cases from bench_limiter, dataknobs' for reference."""
    rows = []
    for i, (name, per_op) in enumerate(cases.items()):
        row = Row("limiter cost per acquire", f"apiorch_nb {name}", "µs")
        row.median, row.min, row.max = _stats(per_op)
        if i == 0:  # the first case is the plain acquire() the target is about
            row.target = f"<= {LIMITER_MAX_US:g} µs"
            row.result = "pass" if row.median <= LIMITER_MAX_US else "fail"
        rows.append(row)
    for n, per_op in dataknobs.items():
        name = f"dataknobs-fsm InMemoryRateLimiter.acquire, {int(n):,} per run"
        row = Row("limiter cost per acquire", name, "µs")
        row.median, row.min, row.max = _stats(per_op)
        row.notes = "reference: sums the whole window on each acquire; cost grows with n"
        rows.append(row)
    return rows


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "calls/s":
        return f"{value:,.0f} calls/s"
    if unit == "µs":
        return f"{value:.2f} µs"
    return f"{value:,.1f} ms"


def _ratio(row: Row) -> str:
    if row.ratio is None:
        return ""
    return f"{row.ratio:.0%}" if row.unit == "calls/s" else f"{row.ratio:.2f}x"


def _cpu(row: Row) -> str:
    if row.cpu_us_per_call is None:
        return ""
    ratio = f" ({row.cpu_ratio:.2f}x)" if row.cpu_ratio is not None else ""
    return f"{row.cpu_us_per_call:,.0f} µs{ratio}"


def markdown(rows: Sequence[Row]) -> str:
    head = [
        "scenario",
        "contender",
        "median",
        "min",
        "max",
        "vs plain aiohttp",
        "target",
        "result",
        "requests the server got",
        "client CPU per call",
        "notes",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r.scenario,
            r.contender,
            _fmt(r.median, r.unit),
            _fmt(r.min, r.unit),
            _fmt(r.max, r.unit),
            _ratio(r),
            r.target,
            r.result,
            r.requests,
            _cpu(r),
            r.notes,
        ]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def modes_markdown(modes: dict[str, dict[str, Any]], calls: int) -> str:
    """Requests that reached the server per mode and contender (`calls` asked each)."""
    names = list(modes)
    lines = [
        f"| mode (asked {calls} requests) | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    all_modes = list(dict.fromkeys(m for counts in modes.values() for m in counts))
    for mode in all_modes:
        cells = [str(modes[n].get(mode, "")) for n in names]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

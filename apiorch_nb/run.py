"""`Run`: the record of one ``execute`` — every call, every attempt, what came back.

The notebook layer draws its DataFrames and charts from this object; scripts can read it
directly as ``orchestrator.last_run``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ._call import CallRecord, CallState
from .config import APIOrchestrationConfig, OrchestrationMode
from .metrics import percentile


@dataclass
class Run:
    """One execution: its calls in endpoint order, results, and how it ended."""

    mode: OrchestrationMode
    records: dict[str, CallRecord]
    results: dict[str, Any]
    started_at: float
    ended_at: float
    data: Any = None  # what execute() returned (None if it raised)
    error: BaseException | None = None
    config: APIOrchestrationConfig | None = None  # what ran (for charts and exports)
    #: The graph that ran: (from, to, kind) with kind "order" or "data" (see _plan.py).
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    input: Any = None  # the run's input (execute's `data`)
    outcomes: Counter[str] = field(init=False)

    def __post_init__(self) -> None:
        self.outcomes = Counter(r.state.value for r in self.records.values())

    @property
    def duration_s(self) -> float:
        return self.ended_at - self.started_at

    @property
    def ok(self) -> bool:
        """No error stopped the run and no call failed without being rescued."""
        return self.error is None and all(
            r.rescued or r.state not in (CallState.FAILED, CallState.CIRCUIT_OPEN)
            for r in self.records.values()
        )

    def attempt_rows(self) -> list[dict[str, Any]]:
        """One plain dict per attempt (one per call without attempts); times in ms from start.

        URLs are stored redacted; this is the source of the notebook's ``calls`` DataFrame.
        """
        rows: list[dict[str, Any]] = []
        for rec in self.records.values():
            base = {
                "endpoint": rec.endpoint,
                "method": rec.method,
                "url": rec.url,
                "outcome": rec.state.value,
                "rescued": rec.rescued,
            }
            if not rec.attempts:
                rows.append(
                    {
                        **base,
                        "attempt": 0,
                        "status": None,
                        "ok": False,
                        "error": rec.reason,
                        "started_ms": self._ms(rec.started_at),
                        "queued_ms": 0.0,
                        "wait_ms": 0.0,
                        "latency_ms": None,
                        "backoff_ms": 0.0,
                        "bytes": 0,
                        "cache_hit": rec.state is CallState.CACHED,
                        "breaker_state": None,
                    }
                )
                continue
            for a in rec.attempts:
                rows.append(
                    {
                        **base,
                        "attempt": a.number,
                        "status": a.status,
                        "ok": a.status is not None and 200 <= a.status < 300,
                        "error": a.error,
                        "started_ms": self._ms(a.queued_at),
                        "queued_ms": a.queued_s * 1000,
                        "wait_ms": a.rate_wait_s * 1000,
                        "latency_ms": None if a.latency_s is None else a.latency_s * 1000,
                        "backoff_ms": a.backoff_s * 1000,
                        "bytes": a.bytes,
                        "cache_hit": False,
                        "breaker_state": a.breaker_state,
                    }
                )
        return rows

    def summary(self) -> str:
        """One line: calls, outcomes, wall time, p50/p95 latency."""
        latencies = [
            a.latency_s * 1000
            for r in self.records.values()
            for a in r.attempts
            if a.latency_s is not None
        ]
        counts = ", ".join(f"{n} {state}" for state, n in sorted(self.outcomes.items()))
        return (
            f"{len(self.records)} calls ({counts}) in {self.duration_s * 1000:.0f} ms; "
            f"p50 {percentile(latencies, 50):.1f} ms, p95 {percentile(latencies, 95):.1f} ms"
        )

    def _ms(self, t: float) -> float:
        return (t - self.started_at) * 1000

    def __repr__(self) -> str:
        status = "ok" if self.ok else f"error: {self.error}" if self.error else "with failures"
        return f"<Run {self.mode.value} {status}: {self.summary()}>"

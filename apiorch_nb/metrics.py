"""`IOMetrics`: cumulative request counts, error rates and latency percentiles.

A *request* here is one call the orchestrator tried to send, counted once after its
retries: it ends as a success or an error. Cache hits and skipped endpoints are not
requests (they have their own counters); a call refused by an open circuit is an error of
type ``circuit_open``. Calls cancelled when a run stops early are counted in ``cancelled``,
not as requests. Latencies are in milliseconds.

Example::

    metrics = IOMetrics()
    metrics.record_request("custom_api", latency=150)
    metrics.record_error("custom_api", error_type="timeout")
    metrics.success_rate   # 50.0 (percent)
    metrics.error_rate     # 0.5  (fraction)
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["EndpointMetrics", "IOMetrics", "MetricsSnapshot", "percentile"]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class _Tally:
    """Counters for one endpoint (or for everything)."""

    __slots__ = (
        "breaker_rejections",
        "cache_hits",
        "cancelled",
        "error_types",
        "errors",
        "latencies_ms",
        "rate_limit_wait_ms",
        "retries",
        "skipped",
        "successes",
    )

    def __init__(self) -> None:
        self.successes = 0
        self.errors = 0
        self.retries = 0
        self.cache_hits = 0
        self.skipped = 0
        self.cancelled = 0
        self.breaker_rejections = 0
        self.rate_limit_wait_ms = 0.0
        self.error_types: Counter[str] = Counter()
        self.latencies_ms = array("d")


@dataclass(frozen=True)
class EndpointMetrics:
    """Totals for one endpoint; rates as in `MetricsSnapshot`."""

    total_requests: int
    successful_requests: int
    failed_requests: int
    success_rate: float
    error_rate: float
    avg_latency: float
    p50_latency: float
    p95_latency: float
    p99_latency: float
    retries: int
    cache_hits: int
    skipped: int
    cancelled: int
    breaker_rejections: int
    rate_limit_wait_ms: float
    error_types: dict[str, int]


@dataclass(frozen=True)
class MetricsSnapshot(EndpointMetrics):
    """`get_metrics()`'s answer: totals over every run, plus a per-endpoint breakdown.

    ``success_rate`` is a percentage (0-100) and ``error_rate`` a fraction (0-1), as on
    the spec page; latencies are milliseconds over successful requests.
    """

    endpoints: dict[str, EndpointMetrics] = field(default_factory=dict)


class IOMetrics:
    """Cumulative metrics, overall and per endpoint name."""

    def __init__(self) -> None:
        self._all = _Tally()
        self._by_name: dict[str, _Tally] = {}

    def _tallies(self, name: str) -> tuple[_Tally, _Tally]:
        tally = self._by_name.get(name)
        if tally is None:
            tally = self._by_name[name] = _Tally()
        return self._all, tally

    def record_request(self, name: str, latency: float = 0.0, *, retries: int = 0) -> None:
        """A successful request to `name` that took `latency` milliseconds."""
        latency = float(latency)
        overall = self._all
        tally = self._by_name.get(name) or self._tallies(name)[1]
        overall.successes += 1
        tally.successes += 1
        overall.latencies_ms.append(latency)
        tally.latencies_ms.append(latency)
        if retries:
            overall.retries += retries
            tally.retries += retries

    def record_error(self, name: str, error_type: str = "error", *, retries: int = 0) -> None:
        """A request to `name` that failed for good, classified by `error_type`."""
        for t in self._tallies(name):
            t.errors += 1
            t.retries += retries
            t.error_types[error_type] += 1
            if error_type == "circuit_open":
                t.breaker_rejections += 1

    def record_cache_hit(self, name: str) -> None:
        for t in self._tallies(name):
            t.cache_hits += 1

    def record_skip(self, name: str) -> None:
        for t in self._tallies(name):
            t.skipped += 1

    def record_cancelled(self, name: str) -> None:
        """A call stopped by fail_fast, error_threshold, total_timeout or an interrupt."""
        for t in self._tallies(name):
            t.cancelled += 1

    def record_rate_limit_wait(self, name: str, wait_ms: float) -> None:
        for t in self._tallies(name):
            t.rate_limit_wait_ms += wait_ms

    def reset(self) -> None:
        self._all = _Tally()
        self._by_name.clear()

    # The spec reads these straight off the metrics object.
    @property
    def total_requests(self) -> int:
        return self._all.successes + self._all.errors

    @property
    def success_rate(self) -> float:
        return _summary(self._all).success_rate

    @property
    def error_rate(self) -> float:
        return _summary(self._all).error_rate

    @property
    def avg_latency(self) -> float:
        return _summary(self._all).avg_latency

    def snapshot(self) -> MetricsSnapshot:
        overall = _summary(self._all)
        return MetricsSnapshot(
            **overall.__dict__,
            endpoints={name: _summary(t) for name, t in self._by_name.items()},
        )

    def __repr__(self) -> str:
        return (
            f"IOMetrics(total_requests={self.total_requests}, "
            f"success_rate={self.success_rate:.1f}%, avg_latency={self.avg_latency:.1f}ms)"
        )


def _summary(t: _Tally) -> EndpointMetrics:
    total = t.successes + t.errors
    lat = t.latencies_ms
    return EndpointMetrics(
        total_requests=total,
        successful_requests=t.successes,
        failed_requests=t.errors,
        success_rate=100.0 * t.successes / total if total else 0.0,
        error_rate=t.errors / total if total else 0.0,
        avg_latency=sum(lat) / len(lat) if lat else 0.0,
        p50_latency=percentile(lat, 50),
        p95_latency=percentile(lat, 95),
        p99_latency=percentile(lat, 99),
        retries=t.retries,
        cache_hits=t.cache_hits,
        skipped=t.skipped,
        cancelled=t.cancelled,
        breaker_rejections=t.breaker_rejections,
        rate_limit_wait_ms=t.rate_limit_wait_ms,
        error_types=dict(t.error_types),
    )

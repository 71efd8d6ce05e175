"""`Run`: the record of one ``execute`` — every call, every attempt, what came back.

The notebook layer draws its DataFrames and charts from this object; scripts can read it
directly as ``orchestrator.last_run``. The views live elsewhere and load their heavy
libraries on first use: DataFrames in ``_frames.py`` (pandas), figures and the dependency
graph in ``_charts.py`` and ``_dag_chart.py`` (plotly), the script export in
``_export_python.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._call import Attempt, CallRecord, CallState
from ._redact import scrub_values
from .config import APIOrchestrationConfig, OrchestrationMode
from .metrics import percentile

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from ._charts import DagView


@dataclass
class Run:
    """One execution: its calls in endpoint order, results, and how it ended.

    A run does not change once ``execute`` has returned, so its DataFrames are built once
    and kept. Every view (``calls``, ``metrics``, ``timeline()``, ``latency_chart()``,
    ``dag()``, ``dag_chart()``, ``to_python()``, the notebook display) reads `attempt_rows`,
    which reads the calls' state-machine log: nothing keeps a second set of books.
    """

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
    #: Secret values (``secrets=``) to scrub from every view, in case one reached a field.
    secret_values: Collection[str] = field(default=(), repr=False)
    #: False while the run is going on (observers see it live), True once it is over.
    finished: bool = True

    @property
    def outcomes(self) -> Counter[str]:
        """How many calls ended in each state (computed when asked: runs can be large)."""
        return Counter(r.state.value for r in self.records.values())

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

        An attempt's phases follow each other: ``started_ms`` (queued) + ``queued_ms`` ->
        rate-limit wait + ``wait_ms`` -> in flight + ``latency_ms`` -> backing off +
        ``backoff_ms``. A phase the run cut short (cancelled while queued or waiting) ends
        at the call's final transition. A call without attempts (cached, skipped, refused
        by the breaker, failed or cancelled before sending) gets one row with attempt 0,
        stamped at the moment it was decided. ``ok`` means the row delivered a good
        response: a 2xx, or a cache hit. URLs are stored redacted; this is the source of
        the ``calls`` DataFrame and every chart.
        """
        rows: list[dict[str, Any]] = []
        for rec in self.records.values():
            base = {
                "endpoint": rec.endpoint,
                "method": rec.method,
                "url": self._hide(rec.url),
                "outcome": rec.state.value,
                "rescued": rec.rescued,
            }
            if not rec.attempts:
                decided = rec.ended_at if rec.ended_at is not None else rec.started_at
                rows.append(
                    {
                        **base,
                        "attempt": 0,
                        "status": None,
                        "ok": rec.state is CallState.CACHED,
                        "error": self._hide_opt(rec.reason),
                        "started_ms": self._ms(decided),
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
                rows.append({**base, **self._attempt_row(rec, a)})
        return rows

    def _attempt_row(self, rec: CallRecord, a: Attempt) -> dict[str, Any]:
        # Only the last attempt can have an open phase; it closes when the call did.
        close = rec.ended_at if rec.ended_at is not None else a.queued_at
        sent = a.sent_at
        queued_end = a.limited_at if a.limited_at is not None else sent
        queued_s = (queued_end if queued_end is not None else close) - a.queued_at
        wait_s = 0.0
        if a.limited_at is not None:
            wait_s = (sent if sent is not None else close) - a.limited_at
        error = a.error
        if error is None and a is rec.attempts[-1] and rec.state is not CallState.OK:
            error = rec.reason  # e.g. a 2xx that did not parse: the call's reason
        return {
            "attempt": a.number,
            "status": a.status,
            "ok": a.status is not None and 200 <= a.status < 300,
            "error": self._hide_opt(error),
            "started_ms": self._ms(a.queued_at),
            "queued_ms": max(0.0, queued_s) * 1000,
            "wait_ms": max(0.0, wait_s) * 1000,
            "latency_ms": None if a.latency_s is None else a.latency_s * 1000,
            "backoff_ms": a.backoff_s * 1000,
            "bytes": a.bytes,
            "cache_hit": False,
            "breaker_state": None if a.breaker_state is None else str(a.breaker_state.value),
        }

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

    # -- views (each loads its library on first use) ------------------------------------------

    @property
    def calls(self) -> pd.DataFrame:
        """One row per attempt, typed columns; see `_frames.CALL_COLUMNS` for the schema."""
        from ._frames import calls_frame

        return self._cached("calls", calls_frame)

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per endpoint plus ``ALL``: outcome counts, retries, latency, wait."""
        from ._frames import metrics_frame

        return self._cached("metrics", metrics_frame)

    def _cached(self, name: str, build: Callable[[Run], Any]) -> Any:
        """Build a view once the run is over; while it is live, build it fresh each time."""
        if not self.finished:
            return build(self)
        cache = self.__dict__.setdefault("_views", {})
        if name not in cache:
            cache[name] = build(self)
        return cache[name]

    def timeline(self) -> go.Figure:
        """A waterfall: one row per call, each attempt split into its phases, in ms."""
        from ._charts import timeline_figure

        return timeline_figure(self)

    def latency_chart(self) -> go.Figure:
        """Per-endpoint distribution of in-flight latency, with p50 and p95 marked."""
        from ._charts import latency_figure

        return latency_figure(self)

    def dag(self) -> DagView:
        """The dependency graph that ran, coloured by outcome (mermaid and plain text)."""
        from ._charts import dag_view

        return dag_view(self)

    def dag_chart(self) -> go.Figure:
        """The dependency graph as a plotly figure: layers left to right, boxes by outcome.

        The same graph as `dag`, for where mermaid does not render (a PNG, a dashboard).
        """
        from ._dag_chart import dag_figure

        return dag_figure(self)

    def to_python(self) -> str:
        """A runnable script that rebuilds this run's config and executes it with its input.

        Raises:
            ConfigError: the run has no config to export.
        """
        from ._export_python import to_python

        return to_python(self)

    def to_http(self) -> str:
        """This run's endpoints as a ``.http`` file (the ``%%orchestrate`` cell language).

        Values are written as they were resolved, so the file runs anywhere; secrets stay
        ``{{$secret NAME}}`` and credentials never appear. The first line says how to run it
        with the same run settings.

        Raises:
            ConfigError: the run has no config, or an endpoint cannot be written as .http.
        """
        from .errors import ConfigError
        from .httpfile import to_http

        if self.config is None:
            raise ConfigError("this run has no config to export")
        return f"# {self._magic_line()}\n\n" + to_http(self.config.endpoints)

    def _magic_line(self) -> str:
        """The ``%%orchestrate`` options that reproduce this run's settings."""
        cfg = self.config
        assert cfg is not None
        parts = ["%%orchestrate", "--mode", cfg.mode.value]
        if cfg.max_concurrent != 10:
            parts += ["--max-concurrent", str(cfg.max_concurrent)]
        if cfg.total_timeout is not None:
            parts += ["--total-timeout", f"{cfg.total_timeout:g}"]
        if cfg.fail_fast:
            parts.append("--fail-fast")
        if cfg.global_rate_limit is not None:
            parts += ["--rate-limit", f"{cfg.global_rate_limit}/{cfg.rate_limit_window:g}s"]
        if cfg.cache_ttl is not None:
            parts += ["--cache-ttl", f"{cfg.cache_ttl:g}"]
        return " ".join(parts)

    def _repr_mimebundle_(
        self, include: Collection[str] | None = None, exclude: Collection[str] | None = None
    ) -> dict[str, str]:
        """The notebook display: summary, per-endpoint table, results as collapsible JSON."""
        from ._frames import run_html, run_text

        bundle = {"text/plain": run_text(self), "text/html": run_html(self)}
        return {
            mime: value
            for mime, value in bundle.items()
            if (include is None or mime in include) and (exclude is None or mime not in exclude)
        }

    # -- helpers -------------------------------------------------------------------------------

    def _ms(self, t: float) -> float:
        return max(0.0, (t - self.started_at) * 1000)

    def _hide(self, text: str) -> str:
        """`text` with every known secret value replaced by ``[REDACTED]``."""
        return scrub_values(text, self.secret_values) if self.secret_values else text

    def _hide_opt(self, text: str | None) -> str | None:
        return None if text is None else self._hide(text)

    def __repr__(self) -> str:
        status = "ok" if self.ok else f"error: {self.error}" if self.error else "with failures"
        return self._hide(f"<Run {self.mode.value} {status}: {self.summary()}>")

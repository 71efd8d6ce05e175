"""A run's tables: the typed ``calls`` and ``metrics`` DataFrames, and the repr's tables.

Everything here reads `Run.attempt_rows`, the one flattening of the calls' state-machine
log, so the DataFrames, the per-endpoint table and the charts cannot disagree. pandas is
imported inside the functions that build DataFrames; the text and HTML tables of the
run's display need nothing beyond the standard library.
"""

from __future__ import annotations

import html
import json
import pprint
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._call import CallState
from ._redact import redact_data
from .metrics import percentile

if TYPE_CHECKING:
    import pandas as pd

    from .run import Run

#: The ``calls`` DataFrame's schema: (column, dtype, key in `Run.attempt_rows`), in order.
CALL_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("endpoint", "string", "endpoint"),
    ("attempt", "Int64", "attempt"),
    ("method", "string", "method"),
    ("url", "string", "url"),
    ("status", "Int64", "status"),
    ("ok", "bool", "ok"),
    ("outcome", "category", "outcome"),
    ("error", "string", "error"),
    ("started_at", "float64", "started_ms"),
    ("queued_ms", "Float64", "queued_ms"),
    ("wait_ms", "Float64", "wait_ms"),
    ("latency_ms", "Float64", "latency_ms"),
    ("backoff_ms", "Float64", "backoff_ms"),
    ("bytes", "Int64", "bytes"),
    ("cache_hit", "bool", "cache_hit"),
    ("breaker_state", "string", "breaker_state"),
    ("rescued", "bool", "rescued"),
)

#: Outcome counters of the ``metrics`` DataFrame, each the number of calls in that state.
_OUTCOME_COUNTS = ("ok", "failed", "circuit_open", "skipped", "cached", "cancelled")

_CELL_CHARS = 60  # longest error shown in a table cell
_JSON_CHARS = 20_000  # longest result shown in the HTML display


def calls_frame(run: Run) -> pd.DataFrame:
    """One row per attempt (attempt 0 for a call that sent nothing), typed columns.

    ``outcome`` is a categorical over every `CallState` value, in the enum's order, so
    frames from different runs concatenate and sort the same way.
    """
    import pandas as pd

    rows = run.attempt_rows()
    columns: dict[str, pd.Series[Any]] = {}
    for name, dtype, key in CALL_COLUMNS:
        values = [r[key] for r in rows]
        if dtype == "category":
            categories = [s.value for s in CallState]
            columns[name] = pd.Series(pd.Categorical(values, categories=categories))
        else:
            columns[name] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(columns)


def metrics_frame(run: Run) -> pd.DataFrame:
    """One row per endpoint (config order) plus ``ALL``, indexed by ``endpoint``.

    Counts are calls by final outcome (``failed`` excludes ``circuit_open``; ``rescued``
    counts the failures an error_handler turned into a result), ``retries`` is attempts
    beyond the first, latency percentiles are over every attempt that was in flight
    (``<NA>`` when none was), and ``wait_ms`` is the total rate-limit wait.
    """
    import pandas as pd

    groups = _group(run.attempt_rows())
    stats = [_endpoint_stats(rows) for rows in groups.values()]
    everything = [row for rows in groups.values() for row in rows]
    total = _endpoint_stats(everything)
    for key in ("calls", *_OUTCOME_COUNTS, "rescued"):  # ALL counts calls, not rows
        total[key] = sum(s[key] for s in stats)
    frame = pd.DataFrame([*stats, total], index=pd.Index([*groups, "ALL"], name="endpoint"))
    for column in ("p50_ms", "p95_ms", "max_ms"):
        frame[column] = frame[column].astype("Float64")
    return frame


def _endpoint_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    calls = {r["endpoint"]: r for r in rows}  # one call per endpoint in a run
    latencies = [r["latency_ms"] for r in rows if r["latency_ms"] is not None]
    attempts = [r for r in rows if r["attempt"] > 0]
    sending = {r["endpoint"] for r in attempts}
    stats: dict[str, Any] = {"calls": len(calls)}
    for outcome in _OUTCOME_COUNTS:
        stats[outcome] = sum(1 for r in calls.values() if r["outcome"] == outcome)
    stats["rescued"] = sum(1 for r in calls.values() if r["rescued"])
    stats["retries"] = len(attempts) - len(sending)
    stats["p50_ms"] = percentile(latencies, 50) if latencies else None
    stats["p95_ms"] = percentile(latencies, 95) if latencies else None
    stats["max_ms"] = max(latencies) if latencies else None
    stats["wait_ms"] = float(sum(r["wait_ms"] for r in rows))
    return stats


def _group(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["endpoint"], []).append(row)
    return groups


# -- per-endpoint lines: the repr's tables and the graph's labels ---------------------------


@dataclass(frozen=True, slots=True)
class EndpointLine:
    """One endpoint's call, summed up: how it ended and what its last attempt saw."""

    endpoint: str
    outcome: str
    rescued: bool
    method: str
    url: str
    status: int | None  # the last attempt's status
    attempts: int
    latency_ms: float | None  # the last attempt's time in flight
    wait_ms: float  # rate-limit wait over every attempt
    error: str | None

    @property
    def label(self) -> str:
        """The outcome as shown: ``failed (rescued)`` for a failure an error_handler fixed."""
        return f"{self.outcome} (rescued)" if self.rescued else self.outcome

    def detail(self) -> str:
        """Status and time, e.g. ``200 · 12 ms`` (empty for a call that sent nothing)."""
        parts = [str(self.status)] if self.status is not None else []
        if self.latency_ms is not None:
            parts.append(f"{self.latency_ms:.0f} ms")
        if self.attempts > 1:
            parts.append(f"{self.attempts} tries")
        return " · ".join(parts)

    @property
    def state(self) -> str:
        """Label and detail, e.g. ``ok · 200 · 12 ms``: a graph node's second line."""
        return " · ".join(part for part in (self.label, self.detail()) if part)


def endpoint_lines(run: Run) -> list[EndpointLine]:
    """One `EndpointLine` per endpoint, in the config's order."""
    lines = []
    for name, rows in _group(run.attempt_rows()).items():
        last = rows[-1]
        lines.append(
            EndpointLine(
                endpoint=name,
                outcome=last["outcome"],
                rescued=last["rescued"],
                method=last["method"],
                url=last["url"],
                status=last["status"],
                attempts=sum(1 for r in rows if r["attempt"] > 0),
                latency_ms=last["latency_ms"],
                wait_ms=sum(r["wait_ms"] for r in rows),
                error=last["error"],
            )
        )
    return lines


_HEADINGS = ("endpoint", "outcome", "status", "tries", "latency ms", "wait ms", "error")


def _cells(line: EndpointLine) -> tuple[str, ...]:
    return (
        line.endpoint,
        line.label,
        "" if line.status is None else str(line.status),
        str(line.attempts),
        "" if line.latency_ms is None else f"{line.latency_ms:.1f}",
        f"{line.wait_ms:.1f}",
        _clip(line.error or "", _CELL_CHARS),
    )


def run_text(run: Run) -> str:
    """The plain-text display: the summary line and a table with one row per endpoint."""
    rows = [_HEADINGS, *(_cells(line) for line in endpoint_lines(run))]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADINGS))]
    numeric = {2, 3, 4, 5}
    table = [
        "  ".join(
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]
    return run._hide("\n".join([_headline(run), *table]))


def run_html(run: Run) -> str:
    """The HTML display: summary, per-endpoint table (outcome coloured), results as JSON.

    Self-contained: inline styles only, no scripts, no links, nothing fetched. Results
    have secret-named keys redacted at any depth; the rest is the API's own data.
    """
    from ._charts import OUTCOME_COLOURS

    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in (*_HEADINGS[:6], "request", "error"))
    body = []
    for line in endpoint_lines(run):
        cells = _cells(line)
        colour = OUTCOME_COLOURS.get(line.outcome, "#777777")
        body.append(
            "<tr>"
            f"<td><code>{esc(cells[0])}</code></td>"
            f'<td><span style="background:{colour};color:#fff;padding:0 6px;'
            f'border-radius:3px">{esc(cells[1])}</span></td>'
            + "".join(f'<td style="text-align:right">{esc(c)}</td>' for c in cells[2:6])
            + f'<td style="text-align:left">{esc(line.method)} {esc(line.url)}</td>'
            f'<td style="text-align:left">{esc(line.error or "")}</td>'
            "</tr>"
        )
    results = "".join(
        f"<details><summary><code>{esc(name)}</code></summary>"
        f'<pre style="max-height:24em;overflow:auto">{esc(_json(value))}</pre></details>'
        for name, value in run.results.items()
    )
    parts = [
        '<div class="apiorch-run">',
        f"<p>{esc(_headline(run))}</p>",
        f'<table style="border-collapse:collapse"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>",
    ]
    if results:
        parts.append(f"<p>Results</p>{results}")
    parts.append("</div>")
    return run._hide("".join(parts))


def _headline(run: Run) -> str:
    how = "ok" if run.ok else f"stopped: {run.error}" if run.error else "with failures"
    return f"Run ({run.mode.value}, {how}): {run.summary()}"


def _json(value: Any) -> str:
    value = redact_data(value)
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=_unjsonable)
    except (TypeError, ValueError):  # non-string keys, cycles: show it as Python
        text = pprint.pformat(value)
    return _clip(text, _JSON_CHARS, lines=True)


def _unjsonable(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    return repr(value)


def _clip(text: str, limit: int, *, lines: bool = False) -> str:
    """`text` cut to `limit` characters, ending in ``…``; on one line unless `lines`, when
    it keeps its lines and says how much was cut."""
    if not lines:
        text = " ".join(text.split())
    if len(text) <= limit:
        return text
    more = len(text) - limit
    if lines:
        return f"{text[:limit]}\n… ({more} more characters)"
    return text[: limit - 1] + "…"

"""Pure builders from a run to pictures: the waterfall, the latency chart, the graph.

Each function reads `Run.attempt_rows` (via `endpoint_lines` for the graph) and returns a
static object: a plotly ``go.Figure`` or a `DagView` holding mermaid and plain text. plotly
is imported inside the functions that draw. Colours are fixed per phase and outcome, so
the same run always gives the same figure, and committed notebooks stay stable.
"""

from __future__ import annotations

import html
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._frames import EndpointLine, _clip, endpoint_lines
from .metrics import percentile

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from .run import Run

#: One colour per final outcome, shared by the waterfall, the graph and the HTML table.
OUTCOME_COLOURS: dict[str, str] = {
    "ok": "#2ca02c",
    "failed": "#d62728",
    "skipped": "#9e9e9e",
    "cached": "#1f77b4",
    "cancelled": "#555555",
    "circuit_open": "#9467bd",
}
_ORANGE = "#ff7f0e"

# Waterfall traces, in legend order: (name, colour). Names are what tests look up.
QUEUED = "queued"
RATE_WAIT = "rate-limit wait"
FLIGHT_OK = "in flight: ok"
FLIGHT_RETRIED = "in flight: retried"
FLIGHT_FAILED = "in flight: failed"
FLIGHT_CANCELLED = "in flight: cancelled"
BACKOFF = "backing off"
_SEGMENTS: dict[str, str] = {
    QUEUED: "#d9d9d9",
    RATE_WAIT: "#ffbf00",
    FLIGHT_OK: OUTCOME_COLOURS["ok"],
    FLIGHT_RETRIED: _ORANGE,
    FLIGHT_FAILED: OUTCOME_COLOURS["failed"],
    FLIGHT_CANCELLED: OUTCOME_COLOURS["cancelled"],
    BACKOFF: _ORANGE,
}
# Calls that sent nothing get a marker at their decision time: outcome -> (name, symbol).
_MARKERS: dict[str, tuple[str, str]] = {
    "cached": ("cached", "diamond"),
    "skipped": ("skipped", "circle-open"),
    "circuit_open": ("circuit open", "x"),
    "cancelled": ("cancelled", "square-open"),
    "failed": ("failed before sending", "x-thin-open"),
}
# Per-endpoint colours for the latency chart (fixed, so figures are deterministic).
_SERIES = (
    "#4c78a8",
    "#f58518",
    "#54a24b",
    "#e45756",
    "#72b7b2",
    "#b279a2",
    "#eeca3b",
    "#9d755d",
    "#ff9da6",
    "#bab0ac",
)


@dataclass
class _Trace:
    """The points of one waterfall trace, collected before the trace is made."""

    base: list[float]
    length: list[float]
    endpoint: list[str]
    hover: list[str]
    label: list[str]


def timeline_figure(run: Run) -> go.Figure:
    """The waterfall: one row per call (endpoint order, top down), x in ms from run start.

    Each attempt is cut into its phases, each a bar segment: queued, rate-limit wait, in
    flight (coloured by the attempt's result) and backing off (hatched). Retries are more
    segments on the same row; a call that sent nothing is a marker at its decision time,
    labelled with its outcome unless it was a cache hit, and a call the run cancelled
    after it started is labelled where it stopped.
    """
    import plotly.graph_objects as go

    names = list(run.records)
    traces: dict[str, _Trace] = {}
    rows = run.attempt_rows()
    last_attempt = {r["endpoint"]: r["attempt"] for r in rows}
    for row in rows:
        if row["attempt"] == 0:
            name = _MARKERS.get(row["outcome"], (row["outcome"], "circle"))[0]
            text = _hover(row, row["outcome"], None, row["started_ms"])
            label = "" if row["outcome"] == "cached" else name
            _add(traces, name, row["started_ms"], 0.0, row["endpoint"], text, label)
            continue
        t = row["started_ms"]
        flight = _flight_kind(row, last=row["attempt"] == last_attempt[row["endpoint"]])
        for phase, ms in (
            (QUEUED, row["queued_ms"]),
            (RATE_WAIT, row["wait_ms"]),
            (flight, row["latency_ms"]),
            (BACKOFF, row["backoff_ms"]),
        ):
            if ms is None or (ms <= 0 and phase != flight):  # an attempt in flight always shows
                continue
            _add(traces, phase, t, ms, row["endpoint"], _hover(row, phase, ms, t), "")
            t += ms
        if row["outcome"] == "cancelled" and row["attempt"] == last_attempt[row["endpoint"]]:
            name = _MARKERS["cancelled"][0]  # where the run stopped it
            _add(traces, name, t, 0.0, row["endpoint"], _hover(row, name, None, t), name)
    fig = go.Figure()
    for name in _SEGMENTS:
        if name in traces:
            fig.add_trace(_bar(name, traces[name]))
    for outcome, (name, symbol) in _MARKERS.items():
        if name in traces:
            fig.add_trace(_marker(name, symbol, outcome, traces[name], run))
    duration = run.duration_s * 1000
    fig.update_layout(
        title={"text": html.escape(run.summary()), "font": {"size": 13}},
        barmode="overlay",
        template="plotly_white",
        height=140 + 34 * max(1, len(names)),
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.15 - 0.6 / max(1, len(names))},
        xaxis={"title": {"text": "ms since run start"}, "range": [0, max(duration, 1.0)]},
        yaxis={
            "type": "category",
            "categoryorder": "array",
            "categoryarray": names,
            "autorange": "reversed",
        },
    )
    return fig


def _flight_kind(row: dict[str, Any], *, last: bool) -> str:
    if row["ok"]:
        return FLIGHT_OK
    if not last or row["backoff_ms"] > 0:
        return FLIGHT_RETRIED
    if row["outcome"] == "cancelled" and row["status"] is None:
        return FLIGHT_CANCELLED
    return FLIGHT_FAILED


def _add(
    traces: dict[str, _Trace],
    name: str,
    base: float,
    length: float,
    endpoint: str,
    hover: str,
    label: str,
) -> None:
    trace = traces.setdefault(name, _Trace([], [], [], [], []))
    trace.base.append(base)
    trace.length.append(length)
    trace.endpoint.append(endpoint)
    trace.hover.append(hover)
    trace.label.append(label)


def _hover(row: dict[str, Any], phase: str, ms: float | None, start: float) -> str:
    status = "–" if row["status"] is None else str(row["status"])
    lines = [
        f"<b>{html.escape(row['endpoint'])}</b>",
        f"attempt {row['attempt']} · status {status}",
        f"{html.escape(phase)}: {ms:.1f} ms" if ms is not None else html.escape(phase),
        f"at {start:.1f} ms" if ms is None else f"{start:.1f} → {start + ms:.1f} ms",
    ]
    if row["error"]:
        lines.append(f"error: {html.escape(_clip(row['error'], 120))}")
    return "<br>".join(lines)


def _bar(name: str, trace: _Trace) -> go.Bar:
    import plotly.graph_objects as go

    marker: dict[str, Any] = {"color": _SEGMENTS[name]}
    if name == BACKOFF:
        marker = {
            "color": "rgba(255,127,14,0.12)",
            "line": {"color": _ORANGE, "width": 1},
            "pattern": {"shape": "/", "fgcolor": _ORANGE, "solidity": 0.3},
        }
    return go.Bar(
        name=name,
        orientation="h",
        base=trace.base,
        x=trace.length,
        y=trace.endpoint,
        width=0.55,
        marker=marker,
        hovertext=trace.hover,
        hoverinfo="text",
    )


def _marker(name: str, symbol: str, outcome: str, trace: _Trace, run: Run) -> go.Scatter:
    import plotly.graph_objects as go

    late = run.duration_s * 1000 * 0.7
    return go.Scatter(
        name=name,
        mode="markers+text" if any(trace.label) else "markers",
        x=trace.base,
        y=trace.endpoint,
        text=trace.label,
        textposition=["middle left" if x > late else "middle right" for x in trace.base],
        textfont={"color": OUTCOME_COLOURS.get(outcome, "#777777"), "size": 11},
        marker={
            "symbol": symbol,
            "size": 9 if outcome == "cached" else 11,
            "color": OUTCOME_COLOURS.get(outcome, "#777777"),
            "line": {"width": 2, "color": OUTCOME_COLOURS.get(outcome, "#777777")},
        },
        hovertext=trace.hover,
        hoverinfo="text",
    )


def latency_figure(run: Run) -> go.Figure:
    """Per-endpoint in-flight latency: a box with every attempt as a point, p50/p95 marked.

    Only endpoints that sent something get a box; percentiles interpolate linearly, as
    `Run.summary` and the ``metrics`` DataFrame do.
    """
    import plotly.graph_objects as go

    series: dict[str, list[tuple[float, str]]] = {}
    for row in run.attempt_rows():
        if row["latency_ms"] is not None:
            status = "–" if row["status"] is None else row["status"]
            point = (row["latency_ms"], f"attempt {row['attempt']} · status {status}")
            series.setdefault(row["endpoint"], []).append(point)
    fig = go.Figure()
    names = [name for name in run.records if name in series]
    for i, name in enumerate(names):
        values = [v for v, _ in series[name]]
        fig.add_trace(
            go.Box(
                name=name,
                x=[name] * len(values),
                y=values,
                text=[t for _, t in series[name]],
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                quartilemethod="linear",
                marker={"color": _SERIES[i % len(_SERIES)], "size": 6},
                hovertemplate="%{y:.1f} ms<br>%{text}<extra>" + html.escape(name) + "</extra>",
            )
        )
    for q, colour in ((50, "#222222"), (95, OUTCOME_COLOURS["failed"])) if names else ():
        values = [percentile([v for v, _ in series[n]], q) for n in names]
        fig.add_trace(
            go.Scatter(
                name=f"p{q}",
                mode="markers+text",
                x=names,
                y=values,
                text=[f"p{q} {v:.1f}" for v in values],
                textposition="middle right",
                textfont={"color": colour, "size": 10},
                marker={
                    "symbol": "line-ew-open",
                    "size": 30,
                    "line": {"width": 3, "color": colour},
                },
                hovertemplate=f"p{q} %{{y:.1f}} ms<extra>%{{x}}</extra>",
            )
        )
    fig.update_layout(
        title={"text": "In-flight latency per endpoint", "font": {"size": 13}},
        template="plotly_white",
        yaxis={"title": {"text": "ms"}, "rangemode": "tozero"},
        xaxis={"type": "category", "categoryorder": "array", "categoryarray": names},
        height=380,
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    if not names:
        fig.add_annotation(text="no request was sent", showarrow=False, x=0.5, y=0.5)
    return fig


# -- the dependency graph -------------------------------------------------------------------


@dataclass(frozen=True)
class DagView:
    """The graph that ran: ``mermaid`` for notebooks that render it, ``text`` for the rest."""

    mermaid: str
    text: str

    def _repr_mimebundle_(
        self, include: Collection[str] | None = None, exclude: Collection[str] | None = None
    ) -> dict[str, str]:
        bundle = {"text/vnd.mermaid": self.mermaid, "text/plain": self.text}
        return {
            mime: value
            for mime, value in bundle.items()
            if (include is None or mime in include) and (exclude is None or mime not in exclude)
        }

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


#: A graph node's (fill, border, text) colours by outcome, for the mermaid graph and the
#: plotly one. ``pending`` is for a call not ended yet (a plan, a run in progress).
NODE_COLOURS: dict[str, tuple[str, str, str]] = {
    "ok": (OUTCOME_COLOURS["ok"], "#1b6e1b", "#ffffff"),
    "failed": (OUTCOME_COLOURS["failed"], "#8c1a1b", "#ffffff"),
    "skipped": (OUTCOME_COLOURS["skipped"], "#6e6e6e", "#ffffff"),
    "cached": (OUTCOME_COLOURS["cached"], "#144f7a", "#ffffff"),
    "cancelled": (OUTCOME_COLOURS["cancelled"], "#2b2b2b", "#ffffff"),
    "circuit_open": (OUTCOME_COLOURS["circuit_open"], "#5e3f80", "#ffffff"),
    "pending": ("#ffffff", "#9e9e9e", "#333333"),
}


def dag_view(run: Run) -> DagView:
    """Mermaid ``flowchart LR`` and a plain-text fallback of the run's graph.

    One node per endpoint, labelled with its name, outcome, status and time; data edges
    are solid, order edges dotted. Node ids are ``n0``, ``n1``, ... in endpoint order, so
    any endpoint name is safe; labels escape what mermaid would read as syntax, after the
    run's secret values are scrubbed from them (escaped first, a secret holding ``"`` or
    ``<`` would no longer match its value).
    """
    lines = endpoint_lines(run)
    ids = {line.endpoint: f"n{i}" for i, line in enumerate(lines)}
    edges = dag_edges(run, ids)
    out = ["flowchart LR"]
    for line in lines:
        name, state = run._hide(line.endpoint), run._hide(line.state)
        label = f"{_mermaid_escape(name)}<br/>{_mermaid_escape(state)}"
        out.append(f'    {ids[line.endpoint]}["{label}"]')
    for a, b, kind in edges:
        out.append(f"    {ids[a]} {'-->' if kind == 'data' else '-.->'} {ids[b]}")
    for outcome, (fill, stroke, colour) in NODE_COLOURS.items():
        out.append(f"    classDef {outcome} fill:{fill},stroke:{stroke},color:{colour}")
    members: dict[str, list[str]] = {}
    for line in lines:
        members.setdefault(line.outcome, []).append(ids[line.endpoint])
    for outcome in NODE_COLOURS:
        if outcome in members:
            out.append(f"    class {','.join(members[outcome])} {outcome}")
    return DagView(mermaid="\n".join(out), text=run._hide(_dag_text(run, lines, edges)))


def dag_edges(run: Run, names: Collection[str]) -> list[tuple[str, str, str]]:
    """The run's edges between endpoints in `names`; a hand-made run may name others."""
    return [(a, b, kind) for a, b, kind in run.edges if a in names and b in names]


def dag_title(run: Run, endpoints: int, edges: int) -> str:
    """The graph's heading, in its text view and above its figure."""
    return f"dependency graph ({run.mode.value}): {endpoints} endpoints, {edges} edges"


def _dag_text(run: Run, lines: list[EndpointLine], edges: list[tuple[str, str, str]]) -> str:
    needs: dict[str, list[str]] = {}
    after: dict[str, list[str]] = {}
    for a, b, kind in edges:
        (needs if kind == "data" else after).setdefault(b, []).append(a)
    status = [line.state for line in lines]
    wide_name = max((len(line.endpoint) for line in lines), default=0)
    wide_status = max((len(s) for s in status), default=0)
    out = [dag_title(run, len(lines), len(edges))]
    for line, state in zip(lines, status, strict=True):
        links = []
        if line.endpoint in needs:
            links.append("needs " + ", ".join(needs[line.endpoint]))
        if line.endpoint in after:
            links.append("after " + ", ".join(after[line.endpoint]))
        text = f"  {line.endpoint.ljust(wide_name)}  {state.ljust(wide_status)}  {'; '.join(links)}"
        out.append(text.rstrip())
    return "\n".join(out)


def _mermaid_escape(text: str) -> str:
    """`text` safe inside a quoted mermaid label: syntax characters as ``#code;`` entities."""
    text = " ".join(text.split())
    return "".join(f"#{ord(ch)};" if ch in '"#&<>`' else ch for ch in text)

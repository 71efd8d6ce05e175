"""The dependency graph as a plotly figure: boxes in layers by depth, arrows for edges.

`dag_figure` is the picture of `Run.dag` for places that show plotly but not mermaid
(a static PNG, the README, a dashboard). Like the other charts it is a pure function of
the run record and imports plotly only when called. It lives apart from ``_charts.py``
because laying out a graph is its own concern.

Layout: an endpoint's column is the length of the longest dependency path leading to it,
so every arrow points right, and an endpoint stands one column past its latest
dependency. An edge that spans columns bends through a row of its own in each column it
crosses, so it never runs over a box. Within a column, endpoints and bends sit near the
mean height of what they come from (one barycentre pass), which keeps fan-outs and joins
free of most crossings.
"""

from __future__ import annotations

import html
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._charts import NODE_COLOURS, dag_edges, dag_title
from ._frames import EndpointLine, _clip, endpoint_lines

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from .run import Run

# Edge traces, by kind (see _plan.py); names are what tests look up.
DATA_EDGES = "needs (data)"
ORDER_EDGES = "after (order)"
_EDGE_STYLE: dict[str, tuple[str, dict[str, object]]] = {
    "data": (DATA_EDGES, {"color": "#555555", "width": 1.6}),
    "order": (ORDER_EDGES, {"color": "#8c8c8c", "width": 1.4, "dash": "dot"}),
}
#: Box size in axis units: columns and rows are 1 apart.
BOX_WIDTH = 0.74
BOX_HEIGHT = 0.74
_ROW_PX = 78  # figure height per row of the tallest column
_COLUMN_PX = 190  # figure width per column, once there are more than a cell holds
_ARROW_PX = 11
_NAME_CHARS = 20  # longer names are clipped in the box (the hover has them whole)


def dag_layers(names: Sequence[str], edges: Sequence[tuple[str, str, str]]) -> dict[str, int]:
    """Each endpoint's column: the number of edges on the longest path that reaches it.

    Endpoints in a cycle (only possible in a hand-made `Run`; configs refuse cycles)
    stay at the depth reached before the cycle.
    """
    depth = dict.fromkeys(names, 0)
    waiting = dict.fromkeys(names, 0)
    after: dict[str, list[str]] = {name: [] for name in names}
    for a, b, _ in edges:
        after[a].append(b)
        waiting[b] += 1
    ready = [name for name in names if waiting[name] == 0]
    while ready:
        a = ready.pop()
        for b in after[a]:
            depth[b] = max(depth[b], depth[a] + 1)
            waiting[b] -= 1
            if waiting[b] == 0:
                ready.append(b)
    return depth


Point = tuple[float, float]


@dataclass(frozen=True)
class DagLayout:
    """Where to draw: a centre per endpoint, and a polyline per edge (in edge order)."""

    nodes: dict[str, Point]
    #: From the right side of the first box to the left side of the second, through one
    #: bend per column the edge crosses, so a long edge runs between boxes, not over them.
    routes: list[list[Point]]
    rows: int  # the most boxes and bends in one column


def dag_layout(names: Sequence[str], edges: Sequence[tuple[str, str, str]]) -> DagLayout:
    """x is an endpoint's layer, y its place in the column (centred, top first).

    An edge that spans several columns gets a placeholder in each column between, which
    takes a row like a box does (the usual layered layout): the edge bends through it.
    """
    depth = dag_layers(names, edges)
    columns: dict[int, list[Hashable]] = {}
    for name in names:
        columns.setdefault(depth[name], []).append(name)
    before: dict[Hashable, list[Hashable]] = {name: [] for name in names}
    chains: list[list[Hashable]] = []
    for i, (a, b, _) in enumerate(edges):
        chain: list[Hashable] = [a]
        for x in range(depth[a] + 1, depth[b]):
            bend = (i, x)
            columns.setdefault(x, []).append(bend)
            before[bend] = [chain[-1]]
            chain.append(bend)
        before[b].append(chain[-1])
        chains.append([*chain, b])
    # ties keep endpoint order, then edge order for bends
    rank = {item: n for n, item in enumerate(it for x in sorted(columns) for it in columns[x])}
    pos: dict[Hashable, Point] = {}

    def key(item: Hashable) -> tuple[float, int]:
        ys = [pos[a][1] for a in before[item] if a in pos]
        return (-sum(ys) / len(ys) if ys else 0.0, rank[item])

    for x in sorted(columns):
        column = sorted(columns[x], key=key)
        for row, item in enumerate(column):
            pos[item] = (float(x), (len(column) - 1) / 2 - row)
    routes = []
    for chain in chains:
        (xa, ya), (xb, yb) = pos[chain[0]], pos[chain[-1]]
        # just short of b's box, so the arrowhead's tip touches it
        ends = [(xa + BOX_WIDTH / 2, ya), (xb - BOX_WIDTH / 2 - 0.015, yb)]
        routes.append([ends[0], *(pos[bend] for bend in chain[1:-1]), ends[1]])
    rows = max((len(column) for column in columns.values()), default=0)
    return DagLayout({name: pos[name] for name in names}, routes, rows)


def dag_figure(run: Run) -> go.Figure:
    """The run's graph: one box per call coloured by its final state, one arrow per edge.

    Boxes read name, outcome, then status · latency · tries, and use the waterfall's
    colours; data edges are solid and order edges dotted, as in `Run.dag`. Hover text
    gives the request and any error. Every string passes the run's secret scrubber.
    """
    import plotly.graph_objects as go

    lines = endpoint_lines(run)
    names = [line.endpoint for line in lines]
    edges = dag_edges(run, run.records)
    layout = dag_layout(names, edges)
    pos = layout.nodes
    fig = go.Figure()
    for kind, (trace_name, style) in _EDGE_STYLE.items():
        mine = [(e, route) for e, route in zip(edges, layout.routes, strict=True) if e[2] == kind]
        if mine:
            fig.add_trace(_edge_trace(trace_name, style, mine, run))
    by_outcome: dict[str, list[EndpointLine]] = {}
    for line in lines:
        by_outcome.setdefault(line.outcome, []).append(line)
    for outcome, group in by_outcome.items():
        fig.add_trace(_node_trace(outcome, group, pos, run))
    columns = max((int(x) for x, _ in pos.values()), default=0) + 1
    rows = max(layout.rows, 2)
    pad = max(0.0, (3 - columns) / 2)  # keep boxes from stretching across a narrow graph
    hidden = {"visible": False, "fixedrange": True}
    fig.update_layout(
        title={
            "text": dag_title(run, len(names), len(edges)),
            "font": {"size": 13},
        },
        template="plotly_white",
        showlegend=False,
        height=90 + _ROW_PX * rows,
        # a long chain is wider than a notebook cell: scroll rather than squeeze the boxes
        width=_COLUMN_PX * columns + 20 if columns > 4 else None,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        shapes=[_box(line, pos[line.endpoint], run) for line in lines],
        xaxis={**hidden, "range": [-0.5 - pad, columns - 0.5 + pad]},
        yaxis={**hidden, "range": [-rows / 2, rows / 2]},
        hoverlabel={"align": "left"},
    )
    if not names:
        fig.add_annotation(text="no endpoints", showarrow=False, x=0.5, y=0.5)
    return fig


def _colours(outcome: str) -> tuple[str, str, str]:
    """(fill, border, text) for a box: the outcome's colours, or white while still open."""
    return NODE_COLOURS.get(outcome, NODE_COLOURS["pending"])


def _box(line: EndpointLine, at: tuple[float, float], run: Run) -> dict[str, object]:
    fill, border, _ = _colours(line.outcome)
    x, y = at
    return {
        "type": "rect",
        "name": run._hide(line.endpoint),
        "xref": "x",
        "yref": "y",
        "x0": x - BOX_WIDTH / 2,
        "x1": x + BOX_WIDTH / 2,
        "y0": y - BOX_HEIGHT / 2,
        "y1": y + BOX_HEIGHT / 2,
        "fillcolor": fill,
        "line": {"color": border, "width": 1},
        "layer": "below",
    }


def _node_trace(
    outcome: str,
    group: list[EndpointLine],
    pos: dict[str, tuple[float, float]],
    run: Run,
) -> go.Scatter:
    import plotly.graph_objects as go

    _, _, text_colour = _colours(outcome)
    labels, hovers = [], []
    for line in group:
        name = html.escape(_clip(run._hide(line.endpoint), _NAME_CHARS))
        parts = [f"<b>{name}</b>", html.escape(line.label)]
        if line.detail():
            parts.append(html.escape(line.detail()))
        labels.append("<br>".join(parts))
        hovers.append(_hover(line, run))
    return go.Scatter(
        name=outcome,
        mode="markers+text",
        x=[pos[line.endpoint][0] for line in group],
        y=[pos[line.endpoint][1] for line in group],
        customdata=[run._hide(line.endpoint) for line in group],
        text=labels,
        textposition="middle center",
        textfont={"color": text_colour, "size": 12},
        # invisible markers: the box is a shape; these give the hover a target
        marker={"symbol": "square", "size": 44, "opacity": 0, "color": text_colour},
        hovertext=hovers,
        hoverinfo="text",
    )


def _hover(line: EndpointLine, run: Run) -> str:
    # url and error come scrubbed from `Run.attempt_rows`; scrub before escaping, so a
    # secret with ``&`` or ``<`` in it is still recognised
    rows = [
        f"<b>{html.escape(run._hide(line.endpoint))}</b> · {html.escape(line.label)}",
        html.escape(f"{line.method} {_clip(line.url, 100)}"),
    ]
    if line.detail():
        rows.append(html.escape(line.detail()))
    if line.wait_ms > 0:
        rows.append(f"rate-limit wait {line.wait_ms:.0f} ms")
    if line.error:
        rows.append(f"error: {html.escape(_clip(line.error, 120))}")
    return "<br>".join(rows)


def _edge_trace(
    name: str,
    style: dict[str, object],
    edges: list[tuple[tuple[str, str, str], list[Point]]],
    run: Run,
) -> go.Scatter:
    """One trace for every edge of a kind: polylines split by ``None``, an arrowhead each."""
    import plotly.graph_objects as go

    xs: list[float | None] = []
    ys: list[float | None] = []
    sizes: list[int] = []
    hovers: list[str] = []
    for (a, b, _), route in edges:
        xs += [x for x, _ in route] + [None]
        ys += [y for _, y in route] + [None]
        sizes += [0] * (len(route) - 1) + [_ARROW_PX, 0]
        hover = html.escape(f"{run._hide(a)} → {run._hide(b)}: {name}")
        hovers += [hover] * len(route) + [""]
    return go.Scatter(
        name=name,
        mode="lines+markers",
        x=xs,
        y=ys,
        line={**style, "shape": "spline", "smoothing": 0.6},
        # the arrowhead points along the last segment
        marker={"symbol": "arrow", "angleref": "previous", "size": sizes, "color": style["color"]},
        hovertext=hovers,
        hoverinfo="text",
    )

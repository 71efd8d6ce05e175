"""Compiles mode + ``depends_on`` into one dependency graph; the only code that reads `mode`.

Two kinds of edge come out:

* *order* edges (``after``): wait until that endpoint has finished, whatever its outcome.
  SEQUENTIAL and CONDITIONAL chain the endpoints with these, so a failure does not stop
  the next endpoint unless ``fail_fast`` says so.
* *data* edges (``needs``): the endpoint uses that endpoint's output. ``depends_on`` and
  the PIPELINE chain are data edges; if the dependency failed, the endpoint is skipped.

Endpoints run in a stable topological order: list order wherever ``depends_on`` allows it.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from ._template import has_placeholders
from .config import OrchestrationMode
from .endpoint import APIEndpoint

_CHAINED = {OrchestrationMode.SEQUENTIAL, OrchestrationMode.CONDITIONAL, OrchestrationMode.PIPELINE}


@dataclass(frozen=True, slots=True)
class Node:
    endpoint: APIEndpoint
    index: int  # position in the config's endpoint list (result order)
    after: tuple[str, ...]  # order edges
    needs: tuple[str, ...]  # data edges
    input_from: str | None  # PIPELINE: the endpoint whose output is this one's input
    templated: bool  # url/params/headers/body hold placeholders

    @property
    def name(self) -> str:
        return self.endpoint.name

    @property
    def waits_for(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.after + self.needs))


@dataclass(frozen=True, slots=True)
class Plan:
    mode: OrchestrationMode
    nodes: tuple[Node, ...]  # topological order
    children: dict[str, tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.nodes)


def compile_plan(endpoints: Sequence[APIEndpoint], mode: OrchestrationMode) -> Plan:
    """The graph `mode` implies for `endpoints` (already validated: no cycles, known names)."""
    order = _stable_topological_order(endpoints)
    position = {ep.name: i for i, ep in enumerate(endpoints)}
    nodes: list[Node] = []
    previous: str | None = None
    for ep in order:
        pipeline_prev = previous if mode is OrchestrationMode.PIPELINE else None
        needs = tuple(dict.fromkeys([*ep.depends_on, *([pipeline_prev] if pipeline_prev else [])]))
        after: tuple[str, ...] = ()
        if mode in _CHAINED and previous is not None and previous not in needs:
            after = (previous,)
        nodes.append(
            Node(
                endpoint=ep,
                index=position[ep.name],
                after=after,
                needs=needs,
                input_from=pipeline_prev,
                templated=any(
                    has_placeholders(v) for v in (ep.url, ep.params, ep.headers, ep.body)
                ),
            )
        )
        previous = ep.name
    children: dict[str, list[str]] = {n.name: [] for n in nodes}
    for node in nodes:
        for dep in node.waits_for:
            children[dep].append(node.name)
    return Plan(mode, tuple(nodes), {k: tuple(v) for k, v in children.items()})


def _stable_topological_order(endpoints: Sequence[APIEndpoint]) -> list[APIEndpoint]:
    """Kahn's algorithm that always picks the earliest-listed ready endpoint."""
    position = {ep.name: i for i, ep in enumerate(endpoints)}
    waiting = {ep.name: len(set(ep.depends_on)) for ep in endpoints}
    dependants: dict[str, list[str]] = {ep.name: [] for ep in endpoints}
    for ep in endpoints:
        for dep in set(ep.depends_on):
            dependants[dep].append(ep.name)
    ready = [position[name] for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[APIEndpoint] = []
    while ready:
        ep = endpoints[heapq.heappop(ready)]
        order.append(ep)
        for child in dependants[ep.name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, position[child])
    return order

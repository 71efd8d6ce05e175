"""Compiles mode + ``depends_on`` into one dependency graph; the only code that reads `mode`.

Two kinds of edge come out:

* *order* edges (``after``): wait until that endpoint has finished, whatever its outcome.
  SEQUENTIAL and CONDITIONAL chain the endpoints with these, so a failure does not stop
  the next endpoint unless ``fail_fast`` says so.
* *data* edges (``needs``): the endpoint uses that endpoint's output. ``depends_on`` and
  the PIPELINE chain are data edges; if the dependency failed, the endpoint is skipped.

A placeholder that names another endpoint (``{user.id}``) is a data edge too, as if it
were in ``depends_on``: a template that reads an earlier result must not race it.

Endpoints run in a stable topological order: list order wherever the edges allow it.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from ._redact import redact_url
from ._template import has_placeholders, placeholder_heads
from .config import OrchestrationMode, _find_cycle
from .endpoint import BODY_METHODS, APIEndpoint
from .errors import ConfigError

_CHAINED = {OrchestrationMode.SEQUENTIAL, OrchestrationMode.CONDITIONAL, OrchestrationMode.PIPELINE}


@dataclass(frozen=True, slots=True)
class Node:
    endpoint: APIEndpoint
    index: int  # position in the config's endpoint list (result order)
    after: tuple[str, ...]  # order edges
    needs: tuple[str, ...]  # data edges
    input_from: str | None  # PIPELINE: the endpoint whose output is this one's input
    #: Which of url, params, headers, body hold placeholders (only those are rendered);
    #: empty, and so false, for an endpoint without any.
    templated_parts: frozenset[str]
    name: str  # the endpoint's name (read on every call; kept as a plain field)
    display_url: str  # the URL as records show it: redacted, placeholders unfilled
    feeds_pipeline: bool  # a PIPELINE successor takes this endpoint's output as input
    static: bool  # the request is the same in every run: no templates, no input as body

    @property
    def waits_for(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.after + self.needs))


@dataclass(frozen=True, slots=True)
class Plan:
    mode: OrchestrationMode
    nodes: tuple[Node, ...]  # topological order
    children: dict[str, tuple[str, ...]]
    by_name: dict[str, Node]
    wait_counts: dict[str, int]  # how many endpoints each one waits for
    config_order: tuple[Node, ...]  # as listed in the config (the order of results)
    roots: tuple[Node, ...]  # the nodes that wait for nothing, in topological order

    def __len__(self) -> int:
        return len(self.nodes)

    def edges(self) -> list[tuple[str, str, str]]:
        """Every edge as (dependency, dependant, "order" | "data")."""
        out = [(dep, n.name, "data") for n in self.nodes for dep in n.needs]
        out += [(dep, n.name, "order") for n in self.nodes for dep in n.after]
        return out


def compile_plan(endpoints: Sequence[APIEndpoint], mode: OrchestrationMode) -> Plan:
    """The graph `mode` implies for `endpoints` (already validated: no depends_on cycles).

    Raises:
        ConfigError: template references close a cycle.
    """
    deps = _dependencies(endpoints)
    cycle = _find_cycle(deps)
    if cycle:
        raise ConfigError(f"depends_on and template references form a cycle: {' -> '.join(cycle)}")
    order = _stable_topological_order(endpoints, deps)
    position = {ep.name: i for i, ep in enumerate(endpoints)}
    nodes: list[Node] = []
    previous: str | None = None
    for ep in order:
        pipeline_prev = previous if mode is OrchestrationMode.PIPELINE else None
        needs = tuple(dict.fromkeys([*deps[ep.name], *([pipeline_prev] if pipeline_prev else [])]))
        after: tuple[str, ...] = ()
        if mode in _CHAINED and previous is not None and previous not in needs:
            after = (previous,)
        parts = {"url": ep.url, "params": ep.params, "headers": ep.headers, "body": ep.body}
        templated_parts = frozenset(part for part, v in parts.items() if has_placeholders(v))
        nodes.append(
            Node(
                endpoint=ep,
                index=position[ep.name],
                after=after,
                needs=needs,
                input_from=pipeline_prev,
                templated_parts=templated_parts,
                name=ep.name,
                display_url=redact_url(ep.url),
                feeds_pipeline=mode is OrchestrationMode.PIPELINE,
                static=not templated_parts
                and (ep.body is not None or ep.method not in BODY_METHODS),
            )
        )
        previous = ep.name
    children: dict[str, list[str]] = {n.name: [] for n in nodes}
    for node in nodes:
        for dep in node.waits_for:
            children[dep].append(node.name)
    return Plan(
        mode,
        tuple(nodes),
        {k: tuple(v) for k, v in children.items()},
        {n.name: n for n in nodes},
        {n.name: len(n.waits_for) for n in nodes},
        tuple(sorted(nodes, key=lambda n: n.index)),
        tuple(n for n in nodes if not n.waits_for),
    )


def _dependencies(endpoints: Sequence[APIEndpoint]) -> dict[str, list[str]]:
    """Each endpoint's depends_on plus the endpoints its templates name."""
    names = {ep.name for ep in endpoints}
    deps: dict[str, list[str]] = {}
    for ep in endpoints:
        referenced = set().union(
            *(placeholder_heads(v) for v in (ep.url, ep.params, ep.headers, ep.body))
        )
        implicit = sorted((referenced & names) - {ep.name} - set(ep.depends_on))
        deps[ep.name] = [*dict.fromkeys(ep.depends_on), *implicit]
    return deps


def _stable_topological_order(
    endpoints: Sequence[APIEndpoint], deps: dict[str, list[str]]
) -> list[APIEndpoint]:
    """Kahn's algorithm that always picks the earliest-listed ready endpoint."""
    position = {ep.name: i for i, ep in enumerate(endpoints)}
    waiting = {name: len(d) for name, d in deps.items()}
    dependants: dict[str, list[str]] = {ep.name: [] for ep in endpoints}
    for name, d in deps.items():
        for dep in d:
            dependants[dep].append(name)
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

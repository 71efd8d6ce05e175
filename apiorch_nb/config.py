"""`OrchestrationMode` and `APIOrchestrationConfig`: what to run and under which rules."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .endpoint import APIEndpoint, _check_int, _check_number
from .errors import ConfigError


class OrchestrationMode(str, enum.Enum):
    """How endpoints relate when ``depends_on`` does not say.

    Every mode runs on the same dependency-graph scheduler; a mode only adds default edges
    and decides what each endpoint receives as input.
    """

    SEQUENTIAL = "sequential"  #: list order, one at a time
    PARALLEL = "parallel"  #: all at once, within max_concurrent
    FANOUT = "fanout"  #: the one input goes to every endpoint at once
    PIPELINE = "pipeline"  #: each endpoint receives the previous endpoint's output
    CONDITIONAL = "conditional"  #: list order; each runs only if its condition holds
    HYBRID = "hybrid"  #: the full graph: depends_on edges, conditions, concurrency


@dataclass
class APIOrchestrationConfig:
    """Everything an `APIOrchestrator` needs: endpoints, mode and the run's rules.

    Rates: ``global_rate_limit`` and each endpoint's ``rate_limit`` count requests per
    ``rate_limit_window`` seconds. ``error_threshold`` is the share of the run's endpoints
    allowed to fail (unrescued) before the rest is cancelled; ``None`` turns it off.

    Raises:
        ConfigError: duplicate names, unknown or cyclic ``depends_on``, negative numbers.
    """

    endpoints: list[APIEndpoint] = field(default_factory=list)
    mode: OrchestrationMode = OrchestrationMode.SEQUENTIAL
    max_concurrent: int = 10
    total_timeout: float | None = None
    fail_fast: bool = False
    global_rate_limit: int | None = None
    rate_limit_window: float = 60.0
    error_threshold: float | None = None
    circuit_breaker_threshold: int = 5
    circuit_breaker_timeout: float = 60.0
    cache_ttl: float | None = None
    cache_key_generator: Callable[[APIEndpoint], Any] | None = None
    metrics_enabled: bool = True
    log_requests: bool = False
    log_responses: bool = False
    result_merger: Callable[[list[Any]], Any] | None = None

    @property
    def caches(self) -> bool:
        """True if any endpoint's responses are cached (a TTL on it or on the config)."""
        return bool(self.cache_ttl) or any(ep.cache_ttl for ep in self.endpoints)

    def __post_init__(self) -> None:
        try:
            self.mode = OrchestrationMode(
                self.mode.lower() if isinstance(self.mode, str) else self.mode
            )
        except ValueError:
            modes = ", ".join(m.value for m in OrchestrationMode)
            raise ConfigError(f"mode must be one of {modes}; got {self.mode!r}") from None
        self.endpoints = list(self.endpoints)
        for ep in self.endpoints:
            if not isinstance(ep, APIEndpoint):
                raise ConfigError(f"endpoints must be APIEndpoint objects, got {ep!r}")
        where = "config"
        _check_int(where, "max_concurrent", self.max_concurrent, minimum=1)
        _check_int(where, "circuit_breaker_threshold", self.circuit_breaker_threshold, minimum=1)
        _check_number(where, "rate_limit_window", self.rate_limit_window, positive=True)
        _check_number(where, "circuit_breaker_timeout", self.circuit_breaker_timeout)
        for name in ("total_timeout", "cache_ttl"):
            if getattr(self, name) is not None:
                _check_number(where, name, getattr(self, name), positive=True)
        if self.global_rate_limit is not None:
            _check_int(where, "global_rate_limit", self.global_rate_limit, minimum=1)
        if self.error_threshold is not None:
            _check_number(where, "error_threshold", self.error_threshold)
            if self.error_threshold > 1:
                raise ConfigError(
                    "config: error_threshold is a share between 0 and 1, "
                    f"got {self.error_threshold}"
                )
        for name in ("cache_key_generator", "result_merger"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigError(f"config: {name} must be callable, got {value!r}")
        check_graph(self.endpoints)


def check_graph(endpoints: Sequence[APIEndpoint]) -> None:
    """Refuse duplicate names, unknown dependencies and dependency cycles (named in full)."""
    names: set[str] = set()
    for ep in endpoints:
        if ep.name in names:
            raise ConfigError(f"endpoint name {ep.name!r} is used twice; names must be unique")
        names.add(ep.name)
    for ep in endpoints:
        unknown = [d for d in ep.depends_on if d not in names]
        if unknown:
            raise ConfigError(
                f"endpoint {ep.name!r}: depends_on names unknown endpoint(s) {unknown}; "
                f"known: {sorted(names)}"
            )
    cycle = _find_cycle({ep.name: ep.depends_on for ep in endpoints})
    if cycle:
        raise ConfigError(f"depends_on has a cycle: {' -> '.join(cycle)}")


def _find_cycle(deps: dict[str, list[str]]) -> list[str] | None:
    """One dependency cycle as a path that returns to its start, or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(deps, WHITE)
    for root in deps:
        if colour[root] != WHITE:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path = [root]
        colour[root] = GREY
        while stack:
            node, i = stack[-1]
            if i < len(deps[node]):
                stack[-1] = (node, i + 1)
                child = deps[node][i]
                if colour[child] == GREY:
                    return [*path[path.index(child) :], child]
                if colour[child] == WHITE:
                    colour[child] = GREY
                    stack.append((child, 0))
                    path.append(child)
            else:
                colour[node] = BLACK
                stack.pop()
                path.pop()
    return None

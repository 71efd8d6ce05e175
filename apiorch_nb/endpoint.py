"""`APIEndpoint`: one HTTP call the orchestrator can make, with the spec's per-endpoint fields."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from ._redact import redact_data, redact_mapping, redact_url
from .errors import ConfigError

#: Statuses retried when an endpoint sets no ``retry_on`` of its own.
DEFAULT_RETRY_ON: tuple[int, ...] = (429, 500, 502, 503, 504)
#: Methods whose input is sent as a JSON body when the endpoint has no explicit ``body``.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_METHODS = BODY_METHODS | {"GET", "HEAD", "OPTIONS"}


@dataclass
class APIEndpoint:
    """One API call: where, how, and how to survive it.

    ``url``, ``params``, ``headers`` and ``body`` may hold ``{placeholder}`` templates filled
    from the run's input and earlier endpoints' results. Callables: ``response_parser``
    gets the fully read response (``.status``, ``.headers``, ``.json()``, ``.text()``);
    ``transform_input`` shapes the endpoint's input; ``transform_output`` shapes its
    result; ``condition`` gets a mapping of what the endpoint can see and decides whether
    it runs; ``error_handler`` turns a failure into a result.

    Example::

        APIEndpoint(name="user", url="http://127.0.0.1:8765/users/{user_id}", retry_count=2)
    """

    name: str
    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    timeout: float = 30.0
    retry_count: int = 3
    retry_delay: float = 1.0
    retry_on: Collection[int] = DEFAULT_RETRY_ON
    rate_limit: int | None = None
    burst_limit: int | None = None
    response_parser: Callable[[Any], Any] | None = None
    transform_input: Callable[[Any], Any] | None = None
    transform_output: Callable[[Any], Any] | None = None
    condition: Callable[[Any], Any] | None = None
    error_handler: Callable[[Exception], Any] | None = None
    depends_on: list[str] = field(default_factory=list)
    #: Seconds that ``rate_limit`` counts over; None uses the config's ``rate_limit_window``.
    rate_limit_window: float | None = None
    #: Seconds to cache this endpoint's responses; None uses the config's ``cache_ttl``,
    #: 0 turns caching off for this endpoint.
    cache_ttl: float | None = None

    def __post_init__(self) -> None:
        if (
            not isinstance(self.name, str)
            or not self.name.strip()
            or self.name != self.name.strip()
        ):
            raise ConfigError(f"endpoint name must be a non-empty string, got {self.name!r}")
        where = f"endpoint {self.name!r}"
        self.method = str(self.method).upper()
        if self.method not in _METHODS:
            raise ConfigError(
                f"{where}: method must be one of {sorted(_METHODS)}, got {self.method!r}"
            )
        if not isinstance(self.url, str) or not (
            self.url.startswith(("http://", "https://")) or self.url.startswith("{")
        ):
            raise ConfigError(f"{where}: url must start with http:// or https://, got {self.url!r}")
        self.headers = dict(self.headers or {})
        self.params = dict(self.params or {})
        if isinstance(self.depends_on, str):
            self.depends_on = [self.depends_on]
        self.depends_on = list(self.depends_on or [])
        self.retry_on = _check_statuses(where, self.retry_on)
        _check_number(where, "timeout", self.timeout, positive=True)
        _check_number(where, "retry_delay", self.retry_delay)
        _check_int(where, "retry_count", self.retry_count, minimum=0)
        if self.rate_limit_window is not None:
            _check_number(where, "rate_limit_window", self.rate_limit_window, positive=True)
        if self.cache_ttl is not None:
            _check_number(where, "cache_ttl", self.cache_ttl)
        for name in ("rate_limit", "burst_limit"):
            if getattr(self, name) is not None:
                _check_int(where, name, getattr(self, name), minimum=1)
        for name in (
            "response_parser",
            "transform_input",
            "transform_output",
            "condition",
            "error_handler",
        ):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigError(f"{where}: {name} must be callable, got {value!r}")
        if self.name in self.depends_on:
            raise ConfigError(f"{where}: depends_on names the endpoint itself")

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}", f"method={self.method!r}", f"url={redact_url(self.url)!r}"]
        if self.headers:
            parts.append(f"headers={redact_mapping(self.headers)!r}")
        if self.params:
            parts.append(f"params={redact_mapping(self.params)!r}")
        if self.body is not None:
            parts.append(f"body={redact_data(self.body)!r}")
        if self.depends_on:
            parts.append(f"depends_on={self.depends_on!r}")
        for name, default in _REPR_DEFAULTS.items():  # the settings that differ, by name
            value = getattr(self, name)
            if value != default:
                shown = getattr(value, "__name__", None) if callable(value) else None
                parts.append(f"{name}={shown}" if shown else f"{name}={value!r}")
        return f"APIEndpoint({', '.join(parts)})"


def _check_number(where: str, name: str, value: Any, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
    if not value >= 0 or (positive and value == 0):  # `not >=` also refuses NaN
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"{where}: {name} must be {bound}, got {value!r}")


def _check_statuses(where: str, value: Any) -> frozenset[int]:
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        return frozenset(int(s) for s in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where}: retry_on must be a collection of HTTP status codes, got {value!r}"
        ) from None


def _check_int(where: str, name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: {name} must be an integer >= {minimum}, got {value!r}")


#: Fields a repr shows only when they differ from these defaults.
_REPR_DEFAULTS: dict[str, Any] = {
    "timeout": 30.0,
    "retry_count": 3,
    "retry_delay": 1.0,
    "retry_on": frozenset(DEFAULT_RETRY_ON),
    "rate_limit": None,
    "rate_limit_window": None,
    "burst_limit": None,
    "cache_ttl": None,
    "response_parser": None,
    "transform_input": None,
    "transform_output": None,
    "condition": None,
    "error_handler": None,
}

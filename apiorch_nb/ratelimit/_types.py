"""The limiter's value types and the protocols a backend implements.

:class:`RateLimit` and :class:`RateLimiterConfig` refuse bad input at construction;
:class:`RateUsage` and :class:`RateLimitStatus` are what :meth:`Limiter.get_status` reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

from ..errors import ConfigError


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` weight units admitted in any window of ``interval`` seconds.

    Windows are half-open: an entry stamped at ``s`` stops counting at ``s + interval``.

    Raises:
        ConfigError: ``limit`` is not an int >= 1, or ``interval`` is not a finite number > 0.
    """

    limit: int
    interval: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 1:
            raise ConfigError(f"RateLimit.limit must be an int >= 1, got {self.limit!r}")
        interval = self.interval
        if not isinstance(interval, (int, float)) or isinstance(interval, bool):
            raise ConfigError(f"RateLimit.interval must be a number of seconds, got {interval!r}")
        if not 0 < interval < math.inf:
            raise ConfigError(f"RateLimit.interval must be finite and > 0, got {interval!r}")


@dataclass(slots=True)
class RateLimiterConfig:
    """Rates per category; a category not listed uses ``default_rates``.

    A category with no rates at all is unlimited. The limiter copies this at construction,
    so later changes go through :meth:`InMemoryRateLimiter.configure`.

    Raises:
        ConfigError: an entry is not a :class:`RateLimit` or a category name is not a str.
    """

    default_rates: list[RateLimit] = field(default_factory=list)
    categories: dict[str, list[RateLimit]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_rates("RateLimiterConfig.default_rates", self.default_rates)
        for name, rates in self.categories.items():
            if not isinstance(name, str):
                raise ConfigError(f"RateLimiterConfig.categories: key must be a str, got {name!r}")
            _check_rates(f"RateLimiterConfig.categories[{name!r}]", rates)


class RateUsage(NamedTuple):
    """One rate of a category as :meth:`InMemoryRateLimiter.get_status` saw it."""

    limit: int
    interval: float
    used: int  #: weight in the current window, pending permits included
    remaining: int


@dataclass(frozen=True, slots=True)
class RateLimitStatus:
    """A snapshot of one category.

    ``next_free_in`` is 0.0 when a weight-1 request would fit every rate now, and ``inf``
    when only settling or releasing a pending permit can free room.
    """

    category: str
    rates: tuple[RateUsage, ...]
    waiting: int
    next_free_in: float
    pending: int = 0  #: weight held by permits not yet settled or released


def _check_rates(where: str, rates: object) -> tuple[RateLimit, ...]:
    if isinstance(rates, RateLimit):
        raise ConfigError(f"{where} must be a list of RateLimit, got one RateLimit; wrap it in [ ]")
    if isinstance(rates, (str, bytes)) or not isinstance(rates, Iterable):
        raise ConfigError(f"{where} must be a list of RateLimit, got {rates!r}")
    checked = tuple(rates)
    for rate in checked:
        if not isinstance(rate, RateLimit):
            raise ConfigError(f"{where} must hold RateLimit objects, got {rate!r}")
    return checked


def _checked_config(
    config: object,
) -> tuple[RateLimiterConfig, tuple[RateLimit, ...], dict[str, tuple[RateLimit, ...]]]:
    """``config`` (None: an empty one), its default rates and its rates per category.

    Raises:
        ConfigError: ``config`` is not a :class:`RateLimiterConfig`, or its rates are bad.
    """
    if config is None:
        config = RateLimiterConfig()
    elif not isinstance(config, RateLimiterConfig):
        raise ConfigError(f"config must be a RateLimiterConfig, got {config!r}")
    default = _check_rates("default_rates", config.default_rates)
    rates = {
        name: _check_rates(f"categories[{name!r}]", rates)
        for name, rates in config.categories.items()
    }
    return config, default, rates


def _category_names(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` without repeats (a repeat would queue and charge twice).

    Raises:
        ConfigError: ``names`` is one str, or holds something that is not a str.
    """
    if isinstance(names, str):
        raise _one_str(names)
    unique = tuple(dict.fromkeys(names))
    for name in unique:
        if not isinstance(name, str):
            raise _not_a_name(name)
    return unique


def _one_str(names: str) -> ConfigError:
    return ConfigError(f"categories must be a list of names, got the str {names!r}")


def _not_a_name(name: object) -> ConfigError:
    return ConfigError(f"rate limit category must be a str, got {name!r}")


def _int_weight(weight: object) -> int:
    """``weight`` if it is an int >= 1 (bool is not).

    Raises:
        ConfigError: it is not.
    """
    if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
        raise ConfigError(f"weight must be an int >= 1, got {weight!r}")
    return int(weight)


def _too_heavy(weight: int, rates: Iterable[tuple[str, RateLimit]]) -> ConfigError:
    """The error for ``weight`` above the first of ``rates`` (category, rate) it exceeds."""
    name, rate = next((n, r) for n, r in rates if weight > r.limit)
    return ConfigError(
        f"weight {weight} can never be admitted in category {name!r}: "
        f"its rate allows at most {rate.limit} per {rate.interval:g}s"
    )


class PermitLike(Protocol):
    """What a :class:`Limiter` backend hands back from ``acquire_permit``."""

    @property
    def waited(self) -> float: ...

    def settle(self, at: float | None = None) -> None: ...

    def release(self) -> None: ...


@runtime_checkable
class Limiter(Protocol):
    """The interface the engine uses, so Redis or sqlite backends can replace the default."""

    async def acquire_permit(
        self, categories: Sequence[str], weight: int = 1, timeout: float | None = None
    ) -> PermitLike: ...

    async def acquire(
        self, category: str, weight: int = 1, timeout: float | None = None
    ) -> float: ...

    def try_acquire(self, category: str, weight: int = 1) -> bool: ...

    def get_status(self, category: str) -> RateLimitStatus: ...

    def reset(self, category: str | None = None) -> None: ...

    def configure(self, category: str, rates: Sequence[RateLimit]) -> None: ...

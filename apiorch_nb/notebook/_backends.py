"""The cache and rate-limiter backends of one kernel: one per URL, made on first use.

``%%orchestrate`` builds a new `APIOrchestrator` for every cell, so the state that must
outlast a cell lives here: the in-memory cache and limiter every cell shares by default,
and one backend per ``--cache`` / ``--limiter`` URL. Building a backend per cell would
open a new sqlite connection or Redis client each time, and an in-memory limiter made
anew would forget the requests of the cell before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .._redact import redact_url
from ..backends import (
    allowed_urls,
    breaker_store_from_url,
    cache_from_url,
    limiter_from_url,
    url_scheme,
)
from ..cache import MemoryCache
from ..errors import ConfigError
from ..ratelimit import InMemoryRateLimiter

if TYPE_CHECKING:
    from ..breaker import BreakerStore
    from ..cache import Cache
    from ..ratelimit import Limiter

MEMORY = "memory"

_T = TypeVar("_T")


def check_url(url: str, what: str) -> str:
    """`url` if its scheme suits `what` (``cache`` or ``limiter``); ``memory`` for every
    spelling of the in-memory backend (empty, ``memory://``).

    Raises:
        ConfigError: an unknown scheme, in the magic's own words (``--cache ...``).
    """
    url = url.strip()
    try:
        scheme = url_scheme(url, what)
    except ConfigError:
        raise ConfigError(
            f"--{what} {redact_url(url)!r}: use one of {allowed_urls(what)}"
        ) from None
    return MEMORY if scheme == MEMORY else url


class KernelBackends:
    """Backends by URL for one loaded extension; ``memory`` is the kernel-wide default."""

    def __init__(self) -> None:
        self._caches: dict[str, Cache] = {MEMORY: MemoryCache()}
        self._limiters: dict[str, Limiter] = {MEMORY: InMemoryRateLimiter()}
        self._breakers: dict[str, BreakerStore | None] = {}

    def cache(self, url: str) -> Cache:
        """The cache `url` names, the same object on every call.

        Raises:
            ConfigError: an unknown scheme, a malformed URL or an unusable sqlite path.
        """
        return _get(self._caches, check_url(url, "cache"), cache_from_url)

    def limiter(self, url: str) -> Limiter:
        """The limiter `url` names, the same object on every call.

        Raises:
            ConfigError: an unknown scheme or a malformed URL.
        """
        return _get(self._limiters, check_url(url, "limiter"), limiter_from_url)

    def breakers(self, url: str) -> BreakerStore | None:
        """What to pass as ``breakers=``: a shared limiter's URL shares the circuits too,
        through one store per URL (a store per cell would leave a Redis client per cell)."""
        url = check_url(url, "limiter")
        if url == MEMORY:
            return None
        return _get(self._breakers, url, breaker_store_from_url)

    def close(self) -> None:
        """Close what can be closed without a loop (sqlite files); Redis clients close with
        their event loop."""
        for cache in self._caches.values():
            close = getattr(cache, "close", None)
            if callable(close):
                close()
        self._caches = {MEMORY: MemoryCache()}
        self._limiters = {MEMORY: InMemoryRateLimiter()}
        self._breakers = {}

    def __repr__(self) -> str:
        caches = sorted(map(redact_url, self._caches))
        limiters = sorted(map(redact_url, self._limiters))
        return f"KernelBackends(cache={caches}, limiter={limiters})"


def _get(table: dict[str, _T], url: str, make: Callable[[str], _T]) -> _T:
    """`table[url]`, made by `make(url)` on first use."""
    if url not in table:
        table[url] = make(url)
    return table[url]

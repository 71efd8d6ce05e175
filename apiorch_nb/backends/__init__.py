"""Persistent and shared backends for the cache, the rate limiter and the breakers, by URL.

================================  ==========================================================
``memory`` (default)              in this process only
``sqlite:///path/to/cache.db``    the cache, on disk: survives a kernel restart
``redis://host:port/db``          shared by every kernel, process and Dask worker using it
================================  ==========================================================

The engine talks to these through its protocols (`apiorch_nb.cache.Cache`,
`apiorch_nb.ratelimit.Limiter`, `apiorch_nb.breaker.BreakerStore`); the redis client is
imported only when a ``redis://`` URL is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..breaker import BreakerStore
    from ..cache import Cache
    from ..ratelimit import Limiter


def _scheme(url: str, what: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(url, str):
        raise ConfigError(f"{what} must be a URL string or a backend object, got {url!r}")
    scheme = "memory" if url in ("", "memory", "memory://") else url.partition("://")[0]
    if scheme not in allowed:
        raise ConfigError(
            f"{what}: unsupported URL {url!r}; use one of "
            + ", ".join(f"{s}://..." if s != "memory" else "memory" for s in allowed)
        )
    return scheme


def cache_from_url(url: str) -> Cache:
    """``memory``, ``sqlite:///path`` or ``redis://...``: the cache backend it names.

    Raises:
        ConfigError: an unknown scheme or a malformed URL.
    """
    scheme = _scheme(url, "cache", ("memory", "sqlite", "redis", "rediss"))
    if scheme == "memory":
        from ..cache import MemoryCache

        return MemoryCache()
    raise ConfigError(f"cache: {scheme}:// is not implemented yet")  # filled in below


def limiter_from_url(url: str) -> Limiter:
    """``memory`` or ``redis://...``: the rate limiter backend it names.

    Raises:
        ConfigError: an unknown scheme or a malformed URL.
    """
    scheme = _scheme(url, "limiter", ("memory", "redis", "rediss"))
    if scheme == "memory":
        from ..ratelimit import InMemoryRateLimiter

        return InMemoryRateLimiter()
    raise ConfigError(f"limiter: {scheme}:// is not implemented yet")


def breaker_store_from_url(url: str) -> BreakerStore | None:
    """``memory`` (None: each orchestrator keeps its own) or ``redis://...``.

    Raises:
        ConfigError: an unknown scheme or a malformed URL.
    """
    scheme = _scheme(url, "breakers", ("memory", "redis", "rediss"))
    if scheme == "memory":
        return None
    raise ConfigError(f"breakers: {scheme}:// is not implemented yet")


__all__ = ["breaker_store_from_url", "cache_from_url", "limiter_from_url"]

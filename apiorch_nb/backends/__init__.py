"""Persistent and shared backends for the cache, the rate limiter and the breakers, by URL.

================================  ==========================================================
``memory`` (default)              in this process only
``sqlite:///path/to/cache.db``    the cache, on disk: survives a kernel restart
``redis://host:port/db``          shared by every kernel, process and Dask worker using it
================================  ==========================================================

The engine talks to these through its protocols (`apiorch_nb.cache.Cache`,
`apiorch_nb.ratelimit.Limiter`, `apiorch_nb.breaker.BreakerStore`); the redis client is
imported only when a ``redis://`` URL is used. The persistent caches are best-effort: a
store that fails turns a get into a miss and skips a set, with a rate-limited warning
(`_best_effort.BestEffort`), so an outage costs hits, never calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._redact import redact_url
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..breaker import BreakerStore
    from ..cache import Cache
    from ..ratelimit import Limiter
    from ._redis_breaker import RedisBreakerStore
    from ._redis_cache import RedisCache
    from ._redis_limiter import RedisRateLimiter
    from ._redis_permit import RedisPermit
    from ._sqlite_cache import SqliteCache


#: The URL schemes each kind of backend accepts (``memory`` has no ``://``).
SCHEMES = {
    "cache": ("memory", "sqlite", "redis", "rediss"),
    "limiter": ("memory", "redis", "rediss"),
    "breakers": ("memory", "redis", "rediss"),
}


def url_scheme(url: str, what: str) -> str:
    """The scheme of backend URL `url` for `what` (``cache``, ``limiter``, ``breakers``);
    ``memory`` for every spelling of the in-process backend (``""``, ``memory://``).

    Cheap (it builds nothing), so a notebook can refuse a typo in ``%config`` at once.

    Raises:
        ConfigError: not a string, or a scheme `what` does not support.
    """
    if not isinstance(url, str):
        raise ConfigError(f"{what} must be a URL string or a backend object, got {url!r}")
    url = url.strip()
    scheme = "memory" if url in ("", "memory", "memory://") else url.partition("://")[0]
    if scheme not in SCHEMES[what] or (scheme != "memory" and "://" not in url):
        raise ConfigError(
            f"{what}: unsupported URL {redact_url(url)!r}; use one of {allowed_urls(what)}"
        )
    return scheme


def allowed_urls(what: str) -> str:
    """The URL forms `what` accepts, for an error message: ``memory, sqlite://..., ...``."""
    return ", ".join(f"{s}://..." if s != "memory" else "memory" for s in SCHEMES[what])


def cache_from_url(url: str) -> Cache:
    """``memory``, ``sqlite:///path`` or ``redis://...``: the cache backend it names.

    ``sqlite:///cache/api.db`` is relative to the current directory and
    ``sqlite:////tmp/api.db`` absolute (see `SqliteCache.from_url`); in
    ``redis://host:6379/0?prefix=myproj`` the ``prefix`` starts every key (see `RedisCache`).

    Raises:
        ConfigError: an unknown scheme or a malformed URL.
    """
    scheme = url_scheme(url, "cache")
    if scheme == "memory":
        from ..cache import MemoryCache

        return MemoryCache()
    if scheme == "sqlite":
        from ._sqlite_cache import SqliteCache

        return SqliteCache.from_url(url)
    from ._redis_cache import RedisCache

    return RedisCache(url)


def limiter_from_url(url: str) -> Limiter:
    """``memory`` or ``redis://...``: the rate limiter backend it names.

    In ``redis://host:6379/0?prefix=myproj`` the ``prefix`` starts every key (see
    `RedisRateLimiter`); every process using the same Redis and prefix shares each limit.

    Raises:
        ConfigError: an unknown scheme or a malformed URL.
    """
    scheme = url_scheme(url, "limiter")
    if scheme == "memory":
        from ..ratelimit import InMemoryRateLimiter

        return InMemoryRateLimiter()
    from ._redis_limiter import RedisRateLimiter

    return RedisRateLimiter(url)


def breaker_store_from_url(url: str) -> BreakerStore | None:
    """``memory`` (None: each orchestrator keeps its own) or ``redis://...``.

    With Redis, every process using it (and the same ``?prefix=``) shares one circuit per
    endpoint name (see `RedisBreakerStore`).

    Raises:
        ConfigError: an unknown scheme or a malformed URL.
    """
    scheme = url_scheme(url, "breakers")
    if scheme == "memory":
        return None
    from ._redis_breaker import RedisBreakerStore

    return RedisBreakerStore(url)


__all__ = [
    "RedisBreakerStore",
    "RedisCache",
    "RedisPermit",
    "RedisRateLimiter",
    "SqliteCache",
    "breaker_store_from_url",
    "cache_from_url",
    "limiter_from_url",
    "url_scheme",
]

_LAZY = {
    "RedisBreakerStore": "._redis_breaker",
    "RedisCache": "._redis_cache",
    "RedisPermit": "._redis_permit",
    "RedisRateLimiter": "._redis_limiter",
    "SqliteCache": "._sqlite_cache",
}


def __getattr__(name: str) -> object:
    """Import a backend class on first use, so `import apiorch_nb` loads no sqlite3."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)

"""The engine's own rate limiter: exact sliding windows, strict FIFO, no polling.

A category (``"endpoint:users"``, ``"global"``, ...) has zero or more :class:`RateLimit` objects,
and a request must fit all of them. Each rate keeps a log of admissions, ``(stamp, weight)``
oldest first, with a running sum. A log is exact where a token bucket is not: a bucket that
starts full lets ``2 * limit`` through in one interval, and the servers we call count
windows.

Waiters queue per category, strictly by arrival. A request that counts against several
categories (:meth:`InMemoryRateLimiter.acquire_permit`) queues in each and is admitted only
when it heads all of them and all have room. This cannot deadlock: arrival order is global
and every queue is sorted by it, so the oldest waiter heads every queue it is in and waits
only for capacity, which time (a timer) or a settle/release (an event) frees.

Nothing polls. A waiter is a future on the caller's running loop; each category has at most
one ``call_later`` timer, set for the moment its head's oldest blocking entry ages out.
Stamps and timers use :func:`time.monotonic`, asyncio's default ``loop.time()``. State is
plain data, so one limiter serves several event loops in turn. It is not thread-safe.
"""

from __future__ import annotations

from ._memory import InMemoryRateLimiter
from ._permit import Permit
from ._types import (
    Limiter,
    PermitLike,
    RateLimit,
    RateLimiterConfig,
    RateLimitStatus,
    RateUsage,
)

__all__ = [
    "InMemoryRateLimiter",
    "Limiter",
    "Permit",
    "PermitLike",
    "RateLimit",
    "RateLimitStatus",
    "RateLimiterConfig",
    "RateUsage",
]

"""Retry decisions as pure functions of an attempt's outcome.

The scheduler asks `RetryPolicy.decide` after each failed attempt and does the sleeping
itself, so every rule here is testable without waiting.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from .endpoint import DEFAULT_RETRY_ON

#: Longest a server's ``Retry-After`` may make us wait, in seconds.
MAX_RETRY_AFTER_S = 60.0


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one failed attempt tells the policy."""

    attempt: int  # 1-based number of the attempt that just failed
    status: int | None = None  # HTTP status, None if no response arrived
    transport_error: bool = False  # connect/reset/timeout: retryable regardless of status
    retry_after: str | None = None  # the raw Retry-After header, if any
    now: float = 0.0  # monotonic clock when it failed
    deadline: float | None = None  # monotonic time by which the whole run must finish


@dataclass(frozen=True, slots=True)
class RetryDecision:
    retry: bool
    delay: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """``retry_count`` retries after the first attempt, with exponential backoff and jitter.

    Retryable: transport errors and timeouts, and statuses in ``retry_on``. The delay before
    retry n (0-based) is ``retry_delay * 2**n`` plus up to 10 % jitter (so clients that
    failed together do not retry together), unless the server sent ``Retry-After``, which
    wins (capped at ``max_retry_after``). A retry whose sleep would end past the run's
    deadline is not made.
    """

    retry_count: int = 3
    retry_delay: float = 1.0
    retry_on: Collection[int] = DEFAULT_RETRY_ON
    max_retry_after: float = MAX_RETRY_AFTER_S
    jitter: Callable[[float], float] = field(default=lambda d: random.uniform(0.0, 0.1 * d))

    def decide(self, outcome: AttemptOutcome) -> RetryDecision:
        if not outcome.transport_error and outcome.status not in self.retry_on:
            return RetryDecision(False, reason=f"HTTP {outcome.status} is not retried")
        if outcome.attempt > self.retry_count:
            return RetryDecision(False, reason=f"no retries left ({self.retry_count} allowed)")
        server_delay = parse_retry_after(outcome.retry_after, now_wall=None)
        if server_delay is not None:
            delay = min(server_delay, self.max_retry_after)
        else:
            base = self.retry_delay * 2 ** (outcome.attempt - 1)
            delay = base + self.jitter(base)
        if outcome.deadline is not None and outcome.now + delay >= outcome.deadline:
            return RetryDecision(False, delay, reason="the next retry would pass total_timeout")
        return RetryDecision(True, delay)


def parse_retry_after(value: str | None, *, now_wall: datetime | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now_wall or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())

"""Per-call state machine: each endpoint's call in a run, and every attempt it made.

A call's transitions are stamped with the monotonic clock (asyncio's ``loop.time()``) and
kept; metrics, DataFrames and the waterfall are all read from this log, so nothing keeps a
second set of books.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any


class CallState(enum.Enum):
    """Where a call is. The last six are terminal."""

    PENDING = "pending"  # waiting for its dependencies
    QUEUED = "queued"  # ready; waiting for a max_concurrent slot
    RATE_LIMITED = "rate_limited"  # holding a slot; waiting for rate-limit capacity
    IN_FLIGHT = "in_flight"  # request sent, response not yet fully read
    BACKING_OFF = "backing_off"  # an attempt failed retryably; sleeping before the next
    OK = "ok"  # got a 2xx response (or an error_handler rescued the failure: see .rescued)
    FAILED = "failed"  # gave up: error after retries, parse error, or template error
    SKIPPED = "skipped"  # condition was false, or a dependency failed
    CACHED = "cached"  # answered from the cache; nothing sent
    CIRCUIT_OPEN = "circuit_open"  # the breaker refused it; nothing sent
    CANCELLED = "cancelled"  # the run was interrupted, timed out or failed fast first

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        CallState.OK,
        CallState.FAILED,
        CallState.SKIPPED,
        CallState.CACHED,
        CallState.CIRCUIT_OPEN,
        CallState.CANCELLED,
    }
)
_ANY_TERMINAL = _TERMINAL
_ALLOWED: dict[CallState, frozenset[CallState]] = {
    CallState.PENDING: frozenset({CallState.QUEUED}) | _ANY_TERMINAL,
    CallState.QUEUED: frozenset({CallState.RATE_LIMITED, CallState.IN_FLIGHT}) | _ANY_TERMINAL,
    CallState.RATE_LIMITED: frozenset({CallState.IN_FLIGHT, CallState.FAILED, CallState.CANCELLED}),
    CallState.IN_FLIGHT: frozenset(
        {CallState.BACKING_OFF, CallState.OK, CallState.FAILED, CallState.CANCELLED}
    ),
    CallState.BACKING_OFF: frozenset({CallState.QUEUED, CallState.FAILED, CallState.CANCELLED}),
}


@dataclass(slots=True)
class Attempt:
    """One try at sending a call's request: what happened and when (monotonic seconds)."""

    number: int
    queued_at: float
    limited_at: float | None = None
    sent_at: float | None = None
    ended_at: float | None = None
    backoff_s: float = 0.0
    status: int | None = None
    bytes: int = 0
    error: str | None = None
    breaker_state: str | None = None

    @property
    def queued_s(self) -> float:
        """Time waiting for a concurrency slot."""
        start = self.limited_at if self.limited_at is not None else self.sent_at
        return max(0.0, (start if start is not None else self.queued_at) - self.queued_at)

    @property
    def rate_wait_s(self) -> float:
        """Time waiting for rate-limit capacity."""
        if self.limited_at is None:
            return 0.0
        end = self.sent_at if self.sent_at is not None else self.ended_at
        return max(0.0, (end if end is not None else self.limited_at) - self.limited_at)

    @property
    def latency_s(self) -> float | None:
        """Time in flight: request sent until the response was fully read (or failed)."""
        if self.sent_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.sent_at


@dataclass(slots=True)
class CallRecord:
    """One endpoint's call in one run: its transitions, attempts and outcome."""

    endpoint: str
    method: str
    url: str
    events: list[tuple[CallState, float]] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    result: Any = None
    error: BaseException | None = None
    rescued: bool = False
    reason: str | None = None

    def __post_init__(self) -> None:
        if not self.events:
            self.events.append((CallState.PENDING, time.monotonic()))

    @property
    def state(self) -> CallState:
        return self.events[-1][0]

    @property
    def started_at(self) -> float:
        return self.events[0][1]

    @property
    def ended_at(self) -> float | None:
        return self.events[-1][1] if self.state.terminal else None

    @property
    def cache_hit(self) -> bool:
        return self.state is CallState.CACHED

    def to(self, state: CallState, now: float | None = None) -> Attempt | None:
        """Move to `state`, stamp it, keep the attempt's phase stamps, return the attempt.

        Entering QUEUED starts a new attempt; the attempt's rate-limit, send, end and
        backoff times are all set here, so the log and the attempts cannot disagree.

        Raises:
            RuntimeError: an impossible transition; it is a bug in the scheduler.
        """
        current = self.state
        if state not in _ALLOWED.get(current, frozenset()):
            raise RuntimeError(f"call {self.endpoint!r}: illegal transition {current} -> {state}")
        stamp = time.monotonic() if now is None else now
        attempt = self.attempts[-1] if self.attempts else None
        if current is CallState.BACKING_OFF and attempt is not None:
            attempt.backoff_s = stamp - self.events[-1][1]
        if state is CallState.QUEUED:
            attempt = Attempt(number=len(self.attempts) + 1, queued_at=stamp)
            self.attempts.append(attempt)
        elif attempt is not None:
            if state is CallState.RATE_LIMITED:
                attempt.limited_at = stamp
            elif state is CallState.IN_FLIGHT:
                attempt.sent_at = stamp
            elif current is CallState.IN_FLIGHT:
                attempt.ended_at = stamp
        self.events.append((state, stamp))
        return attempt

    def time_in(self, state: CallState) -> float:
        """Total seconds spent in `state` over the whole call."""
        total = 0.0
        for (s, t), (_, t_next) in zip(self.events, self.events[1:], strict=False):
            if s is state:
                total += t_next - t
        return total

"""Per-call state machine: each endpoint's call in a run, and every attempt it made.

A call's transitions are stamped with the monotonic clock (asyncio's ``loop.time()``) and
kept; metrics, DataFrames and the waterfall are all read from this log, so nothing keeps a
second set of books.
"""

from __future__ import annotations

import enum
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

_monotonic = time.monotonic


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

    # Filled in below: a bit per state and, per state, the mask of states it may move to.
    # Checking a transition is then one AND: hashing enum members is a Python-level call
    # in 3.11, and this check runs four or five times per call.
    _bit: int
    _next: int
    terminal: bool


def _mask(*states: CallState) -> int:
    return sum(s._bit for s in states)


for _i, _state in enumerate(CallState):
    _state._bit = 1 << _i
_TERMINAL = (
    CallState.OK,
    CallState.FAILED,
    CallState.SKIPPED,
    CallState.CACHED,
    CallState.CIRCUIT_OPEN,
    CallState.CANCELLED,
)
_ALLOWED: dict[CallState, int] = {
    CallState.PENDING: _mask(CallState.QUEUED, *_TERMINAL),
    CallState.QUEUED: _mask(CallState.RATE_LIMITED, CallState.IN_FLIGHT, *_TERMINAL),
    CallState.RATE_LIMITED: _mask(CallState.IN_FLIGHT, CallState.FAILED, CallState.CANCELLED),
    CallState.IN_FLIGHT: _mask(
        CallState.BACKING_OFF, CallState.OK, CallState.FAILED, CallState.CANCELLED
    ),
    CallState.BACKING_OFF: _mask(CallState.QUEUED, CallState.FAILED, CallState.CANCELLED),
}
for _state in CallState:
    _state._next = _ALLOWED.get(_state, 0)
    _state.terminal = _state in _TERMINAL

# The members as module names: on Python 3.11 reading ``CallState.OK`` costs about four
# times a global, and the engine's hot paths read states a few dozen times per call.
PENDING = CallState.PENDING
QUEUED = CallState.QUEUED
RATE_LIMITED = CallState.RATE_LIMITED
IN_FLIGHT = CallState.IN_FLIGHT
BACKING_OFF = CallState.BACKING_OFF
OK = CallState.OK
FAILED = CallState.FAILED
SKIPPED = CallState.SKIPPED
CACHED = CallState.CACHED
CIRCUIT_OPEN = CallState.CIRCUIT_OPEN
CANCELLED = CallState.CANCELLED


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
    breaker_state: Any = None  # the BreakerState when the attempt started (a str enum)

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
    """One endpoint's call in one run: its transitions, attempts and outcome.

    Transitions are kept as a list of states and an unboxed array of stamps rather than a
    list of tuples: thousands of calls stay alive for a whole run, and fewer objects per
    call means less garbage-collector work.
    """

    endpoint: str
    method: str
    url: str
    attempts: list[Attempt] = field(default_factory=list)
    result: Any = None
    error: BaseException | None = None
    rescued: bool = False
    reason: str | None = None
    _states: list[CallState] = field(default_factory=lambda: [CallState.PENDING])
    _stamps: array[float] = field(default_factory=lambda: array("d", (_monotonic(),)))

    @property
    def events(self) -> list[tuple[CallState, float]]:
        """Every transition as (state, monotonic time), oldest first."""
        return list(zip(self._states, self._stamps, strict=True))

    @property
    def state(self) -> CallState:
        return self._states[-1]

    @property
    def started_at(self) -> float:
        return self._stamps[0]

    @property
    def ended_at(self) -> float | None:
        return self._stamps[-1] if self._states[-1].terminal else None

    @property
    def cache_hit(self) -> bool:
        return self._states[-1] is CallState.CACHED

    def to(self, state: CallState, now: float | None = None) -> Attempt | None:
        """Move to `state`, stamp it, keep the attempt's phase stamps, return the attempt.

        Entering QUEUED starts a new attempt; the attempt's rate-limit, send, end and
        backoff times are all set here, so the log and the attempts cannot disagree.

        Raises:
            RuntimeError: an impossible transition; it is a bug in the scheduler.
        """
        current = self._states[-1]
        if not current._next & state._bit:
            raise RuntimeError(f"call {self.endpoint!r}: illegal transition {current} -> {state}")
        stamp = _monotonic() if now is None else now
        attempt = self.attempts[-1] if self.attempts else None
        if current is BACKING_OFF and attempt is not None:
            attempt.backoff_s = stamp - self._stamps[-1]
        if state is QUEUED:
            attempt = Attempt(len(self.attempts) + 1, stamp)  # (number, queued_at)
            self.attempts.append(attempt)
        elif attempt is not None:
            if state is RATE_LIMITED:
                attempt.limited_at = stamp
            elif state is IN_FLIGHT:
                attempt.sent_at = stamp
            elif current is IN_FLIGHT or (state.terminal and current in (QUEUED, RATE_LIMITED)):
                attempt.ended_at = stamp  # also when cancelled before it was sent
        self._states.append(state)
        self._stamps.append(stamp)
        return attempt

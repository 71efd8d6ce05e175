"""`CircuitBreaker`: stop calling an endpoint that keeps failing, then probe it once.

closed ──(threshold consecutive failures)──▶ open ──(timeout elapsed)──▶ half-open
  ▲                                           ▲                            │ one probe
  └────────────── probe succeeds ─────────────┴──────── probe fails ───────┘

While open every call is refused at once with `CircuitOpenError` (nothing is sent). In
half-open exactly one caller is let through as the probe; everyone else is refused until
the probe's outcome is known. Only the probe's outcome moves the state out of half-open.
"""

from __future__ import annotations

import enum
import inspect
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

from .errors import CircuitOpenError, ConfigError


class BreakerState(str, enum.Enum):
    CLOSED = "closed"  # calls pass; consecutive failures are counted
    OPEN = "open"  # calls are refused until `timeout` has passed
    HALF_OPEN = "half_open"  # one probe is allowed; others are refused


_CLOSED = BreakerState.CLOSED


class CircuitBreaker:
    """A three-state circuit breaker for one endpoint (or any callable).

    Example::

        breaker = CircuitBreaker(threshold=3, timeout=30.0)
        data = await breaker.call(fetch_user, 42)   # async or sync callables

    Raises:
        CircuitOpenError: from `call` and `before_call` while the circuit refuses calls.
    """

    __slots__ = (
        "_clock",
        "_failures",
        "_opened_at",
        "_probe_out",
        "_state",
        "name",
        "rejections",
        "threshold",
        "timeout",
    )

    def __init__(
        self,
        threshold: int = 5,
        timeout: float = 60.0,
        *,
        name: str = "circuit",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigError(
                f"CircuitBreaker: threshold must be an integer >= 1, got {threshold!r}"
            )
        if not isinstance(timeout, (int, float)) or not timeout >= 0:  # refuses NaN too
            raise ConfigError(f"CircuitBreaker: timeout must be >= 0 seconds, got {timeout!r}")
        self.threshold = threshold
        self.timeout = float(timeout)
        self.name = name
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_out = False
        #: Calls refused while open or half-open.
        self.rejections = 0

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose timeout has passed reads half-open."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.timeout:
            self._state = BreakerState.HALF_OPEN
            self._probe_out = False
        return self._state

    @property
    def failure_count(self) -> int:
        """Consecutive failures counted while closed."""
        return self._failures

    def before_call(self) -> BreakerState:
        """Admit one call (returning the state it was admitted in) or refuse it.

        An admitted call must end in exactly one of `record_success`, `record_failure`
        or `record_ignored`.
        """
        if self._state is _CLOSED:  # the common case, without the property's clock read
            return _CLOSED
        state = self.state
        if state is BreakerState.HALF_OPEN and not self._probe_out:
            self._probe_out = True
            return state
        self.rejections += 1
        retry_in = max(0.0, self.timeout - (self._clock() - self._opened_at))
        raise CircuitOpenError(self.name, retry_in)

    def record_success(self) -> None:
        self._failures = 0
        self._probe_out = False
        self._state = BreakerState.CLOSED

    def record_failure(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._trip()
            return
        self._failures += 1
        if self._state is BreakerState.CLOSED and self._failures >= self.threshold:
            self._trip()

    def record_ignored(self) -> None:
        """The admitted call ended without saying anything about health (e.g. cancelled)."""
        if self._state is BreakerState.HALF_OPEN:
            self._probe_out = False

    def reset(self) -> None:
        self.record_success()

    def record(self, outcome: BreakerOutcome) -> None:
        """`record_success`, `record_failure` or `record_ignored`, by name."""
        if outcome == "success":
            self.record_success()
        elif outcome == "failure":
            self.record_failure()
        else:
            self.record_ignored()

    def _adopt(self, state: BreakerState, failures: int, open_for: float, probe_out: bool) -> None:
        """Take the shared state a `BreakerStore` just read; `open_for`: seconds still open.

        Keeps ``state``, ``failure_count`` and the run records in step with the other
        processes; an adopted open state turns half-open on this breaker's own clock.
        """
        self._state = state
        self._failures = failures
        self._probe_out = probe_out
        if state is BreakerState.OPEN:
            self._opened_at = self._clock() - max(0.0, self.timeout - open_for)

    async def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call `func(*args, **kwargs)` through the breaker; awaits it if it is async.

        Any exception from `func` counts as a failure and is re-raised unchanged.
        """
        self.before_call()
        try:
            result = func(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception:
            self.record_failure()
            raise
        except BaseException:  # cancelled: says nothing about the callee's health
            self.record_ignored()
            raise
        self.record_success()
        return result

    def _trip(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._probe_out = False
        self._failures = 0

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(name={self.name!r}, state={self.state.value}, "
            f"failures={self._failures}/{self.threshold}, timeout={self.timeout:g}s)"
        )


#: What one admitted call told its breaker: see `CircuitBreaker.record_*`.
BreakerOutcome = Literal["success", "failure", "ignored"]


class BreakerStore(Protocol):
    """Breaker state kept outside the process (Redis), so every kernel sees one circuit.

    When an orchestrator has a store, the engine asks it (not the local breaker) whether a
    call may go, and tells it each call's outcome; the store keeps `breaker`'s local state
    in step, so ``breaker.state`` and the run records read the shared state.
    """

    async def before_call(self, breaker: CircuitBreaker) -> BreakerState:
        """Admit one call or raise `CircuitOpenError`, like `CircuitBreaker.before_call`."""
        ...

    async def record(self, breaker: CircuitBreaker, outcome: BreakerOutcome) -> None:
        """Tell the shared circuit how an admitted call ended.

        ``"ignored"`` (a cancelled call) must neither suspend nor raise: it is awaited
        while the cancellation propagates, so any I/O it needs goes to the background.
        """
        ...

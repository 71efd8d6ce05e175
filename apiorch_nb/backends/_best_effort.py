"""`BestEffort`: a cache backend's failures cost a hit or a write, never the call.

A cache is an optimisation. When Redis is down or slow, or the sqlite file is locked, a
cached endpoint should still answer from its API, so the backends absorb their own errors
here: a failed get counts as a miss and a failed set is skipped. Each failure is logged as
a warning on the ``"apiorch_nb"`` logger, but at most once per `WARN_EVERY_S` per backend
and operation, with the count absorbed since: 10,000 rows against a Redis that is down
log one line, not 10,000.

After a failure the backend *rests* for `REST_S` seconds: gets and sets are skipped
without trying, so a Redis that hangs costs one socket timeout, not one per call. Then a
single call tries it again; if that works the cache is back, otherwise it rests again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from types import TracebackType

logger = logging.getLogger("apiorch_nb")

#: Seconds between two warnings about the same backend and operation.
WARN_EVERY_S = 60.0
#: Seconds a backend is left alone after a failure before one call tries it again.
REST_S = 10.0


class Health:
    """Whether a backend is worth asking, shared by its get and set guards.

    Thread-safe (Dask runs tasks in threads); the healthy path reads one attribute.
    """

    __slots__ = ("_clock", "_failed_at", "_lock", "_probing")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failed_at: float | None = None
        self._probing = False

    def usable(self) -> bool:
        """True if a call should try the backend: it is healthy, or its rest is over and
        no other call is trying it already (this one becomes the probe)."""
        if self._failed_at is None:
            return True
        with self._lock:
            if self._failed_at is None:
                return True
            if self._probing or self._clock() < self._failed_at + REST_S:
                return False
            self._probing = True
            return True

    def worked(self) -> None:
        if self._failed_at is not None:
            with self._lock:
                self._failed_at, self._probing = None, False

    def failed(self) -> None:
        with self._lock:
            self._failed_at, self._probing = self._clock(), False

    def gave_up(self) -> None:
        """The call ended without an answer either way (cancelled): let another probe."""
        if self._probing:
            with self._lock:
                self._probing = False


class BestEffort:
    """A context manager that swallows `errors` raised in its block, and warns about them.

    One instance per backend and operation (get or set), entered by every call that
    `usable` lets through: it keeps no per-call state, so concurrent tasks and threads
    share it. `where` names the backend and must hold no secret (a URL goes through
    `redact_url` first). `health` is shared with the backend's other guard.
    """

    __slots__ = (
        "_absorbed",
        "_clock",
        "_errors",
        "_health",
        "_lock",
        "_next_warning",
        "action",
        "where",
    )

    def __init__(
        self,
        where: str,
        action: str,
        errors: tuple[type[BaseException], ...],
        *,
        clock: Callable[[], float] = time.monotonic,
        health: Health | None = None,
    ) -> None:
        self.where = where  #: e.g. ``cache 'redis://[REDACTED]@host:6379/0'``
        self.action = action  #: e.g. ``get failed; counted as a miss``
        self._errors = errors
        self._clock = clock
        self._health = health if health is not None else Health(clock)
        self._lock = threading.Lock()
        self._absorbed = 0  # failures since the last warning
        self._next_warning = -math.inf

    def usable(self) -> bool:
        """False while the backend rests after a failure: skip it without trying."""
        return self._health.usable()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None:
            self._health.worked()
            return False
        if not isinstance(exc, self._errors):
            self._health.gave_up()
            return False  # a bug or a cancellation is not the backend failing: re-raise it
        self._health.failed()
        now = self._clock()
        with self._lock:
            self._absorbed += 1
            if now < self._next_warning:
                return True
            self._next_warning = now + WARN_EVERY_S
            count, self._absorbed = self._absorbed, 0
        more = f" ({count - 1} more since the last warning)" if count > 1 else ""
        logger.warning(
            "%s: %s (%s: %s)%s; calls go on without the cache, which is tried again in %g s."
            " Logged at most every %g s.",
            self.where,
            self.action,
            type(exc).__name__,
            exc,
            more,
            REST_S,
            WARN_EVERY_S,
        )
        return True


def cache_guards(
    where: str, errors: tuple[type[BaseException], ...]
) -> tuple[BestEffort, BestEffort]:
    """The guards of cache backend `where`: one around its get, one around its set,
    resting together after either fails."""
    health = Health()
    return (
        BestEffort(where, "get failed; counted as a miss", errors, health=health),
        BestEffort(where, "set failed; the response was not stored", errors, health=health),
    )

"""`BestEffort`: a cache backend's failures cost a hit or a write, never the call.

A cache is an optimisation. When Redis is down or slow, or the sqlite file is locked, a
cached endpoint should still answer from its API, so the backends absorb their own errors
here: a failed get counts as a miss and a failed set is skipped. Each failure is logged as
a warning on the ``"apiorch_nb"`` logger, but at most once per `WARN_EVERY_S` per backend
and operation, with the count absorbed since: 10,000 rows against a Redis that is down
log one line, not 10,000.
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


class BestEffort:
    """A context manager that swallows `errors` raised in its block, and warns about them.

    One instance per backend and operation (get or set), entered by every call: it keeps
    no per-call state, so concurrent tasks and threads share it. `where` names the backend
    and must hold no secret (a URL goes through `redact_url` first).
    """

    __slots__ = ("_absorbed", "_clock", "_errors", "_lock", "_next_warning", "action", "where")

    def __init__(
        self,
        where: str,
        action: str,
        errors: tuple[type[BaseException], ...],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = where  #: e.g. ``cache 'redis://[REDACTED]@host:6379/0'``
        self.action = action  #: e.g. ``get failed; counted as a miss``
        self._errors = errors
        self._clock = clock
        self._lock = threading.Lock()
        self._absorbed = 0  # failures since the last warning
        self._next_warning = -math.inf

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, self._errors):
            return False  # a bug or a cancellation is not the backend failing: re-raise it
        now = self._clock()
        with self._lock:
            self._absorbed += 1
            if now < self._next_warning:
                return True
            self._next_warning = now + WARN_EVERY_S
            count, self._absorbed = self._absorbed, 0
        more = f" ({count - 1} more since the last warning)" if count > 1 else ""
        logger.warning(
            "%s: %s (%s: %s)%s; the call went on without the cache. Logged at most every %g s.",
            self.where,
            self.action,
            type(exc).__name__,
            exc,
            more,
            WARN_EVERY_S,
        )
        return True


def cache_guards(
    where: str, errors: tuple[type[BaseException], ...]
) -> tuple[BestEffort, BestEffort]:
    """The guards of cache backend `where`: one around its get, one around its set."""
    return (
        BestEffort(where, "get failed; counted as a miss", errors),
        BestEffort(where, "set failed; the response was not stored", errors),
    )

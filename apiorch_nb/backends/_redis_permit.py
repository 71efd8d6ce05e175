"""`RedisPermit`: one admission in Redis, pending until the response arrives."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._redis_limiter import RedisRateLimiter


class RedisPermit:
    """One admission against one or more categories in Redis, pending until settled.

    Like the in-memory `Permit`: settle it when the response arrives (its entries are
    re-stamped with Redis's time then), release it if the request was never sent. The
    first of the two wins; both are idempotent and return at once (the write to Redis
    runs in the background on the running loop).
    """

    __slots__ = (
        "_keys",
        "_limiter",
        "_member",
        "_state",
        "categories",
        "stamp_us",
        "waited",
        "weight",
    )

    def __init__(
        self,
        limiter: RedisRateLimiter,
        categories: tuple[str, ...],
        keys: list[str],
        member: str,
        weight: int,
        stamp_us: int,
        waited: float,
    ) -> None:
        self._limiter = limiter
        self._keys = keys
        self._member = member
        self._state: Literal["pending", "settled", "released"] = "pending"
        self.categories = categories
        self.weight = weight
        self.stamp_us = stamp_us  #: Redis ``TIME`` at admission, in microseconds
        self.waited = waited  #: seconds spent queued

    @property
    def state(self) -> Literal["pending", "settled", "released"]:
        return self._state

    def settle(self, at: float | None = None) -> None:
        """Stamp the admission at ``at`` (a ``time.monotonic()`` value; default now).

        ``at`` is clamped to the admission, since no request leaves before it.
        """
        if self._state != "pending":
            return
        self._state = "settled"
        ago = 0 if at is None else max(0, round((time.monotonic() - float(at)) * 1e6))
        self._done("settle", ago)

    def release(self) -> None:
        """Refund the admission in every process's view: the request was never sent."""
        if self._state != "pending":
            return
        self._state = "released"
        self._done("release", 0)

    def _done(self, action: Literal["settle", "release"], ago_us: int) -> None:
        if not self._keys:
            return  # only unlimited categories: nothing was written
        limiter = self._limiter
        # configure() may have copied this permit's entries into new keys meanwhile
        keys = list(dict.fromkeys([*self._keys, *limiter._plan(self.categories).keys]))
        limiter._finish(
            keys, action, self._member, self.weight, ago_us, self.stamp_us, self.categories
        )

    def __repr__(self) -> str:
        return (
            f"<RedisPermit {self._state} categories={list(self.categories)} "
            f"weight={self.weight} waited={self.waited:.3f}s>"
        )

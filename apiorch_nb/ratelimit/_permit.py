"""Permit: one admission, pending until the response arrives or the request is dropped."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ._window import _monotonic

if TYPE_CHECKING:
    from ._memory import InMemoryRateLimiter
    from ._window import _Category


class Permit:
    """One admission against one or more categories, pending until settled or released.

    While pending its weight counts as used in every window and never expires. Settle it
    when the response arrives: that time bounds when the server saw the request, so the
    server never sees more than ``limit`` in any window whatever the network delay. Release
    it if the request was never sent. The first of the two wins; both are idempotent.

    Hold a permit only for the life of its request: a permit that is never settled keeps
    its capacity for good, and one held while waiting for another permit in the same
    category can wait forever.
    """

    __slots__ = ("_cats", "_epochs", "_limiter", "_state", "admitted_at", "waited", "weight")

    def __init__(
        self,
        limiter: InMemoryRateLimiter,
        cats: tuple[_Category, ...],
        weight: int,
        admitted_at: float,
        waited: float,
    ) -> None:
        self._limiter = limiter
        self._cats = cats
        self._epochs = [c.epoch for c in cats]
        self._state: Literal["pending", "settled", "released"] = "pending"
        self.weight = weight
        self.admitted_at = admitted_at  #: ``time.monotonic()`` at admission
        self.waited = waited  #: seconds spent queued

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(c.name for c in self._cats)

    @property
    def state(self) -> Literal["pending", "settled", "released"]:
        return self._state

    def settle(self, at: float | None = None) -> None:
        """Stamp the admission at ``at`` (default now); it expires ``interval`` later.

        ``at`` is clamped to :attr:`admitted_at`, since no request leaves before admission.
        """
        if self._state != "pending":
            return
        self._state = "settled"
        stamp = _monotonic() if at is None else max(float(at), self.admitted_at)
        self._finish(stamp)

    def release(self) -> None:
        """Refund the admission: the request was never sent."""
        if self._state != "pending":
            return
        self._state = "released"
        self._finish(None)

    def _finish(self, stamp: float | None) -> None:
        weight = self.weight
        wake = []
        for cat, epoch in zip(self._cats, self._epochs, strict=True):
            if cat.epoch != epoch:
                continue  # reset() already forgot this usage
            cat.pending -= weight
            if stamp is not None:
                for window in cat.windows:
                    window.add(stamp, weight)
            if cat.waiters:
                wake.append(cat)
        if wake:
            self._limiter._pump(wake)

    def __repr__(self) -> str:
        return (
            f"<Permit {self._state} categories={list(self.categories)} weight={self.weight} "
            f"waited={self.waited:.3f}s>"
        )

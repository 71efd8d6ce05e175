"""The local FIFO in front of Redis: waiters that sleep on timers and are kicked awake.

Only a queue's head asks Redis. A refused head sleeps until the moment Redis said room
frees (a ``call_at`` timer) or until it is kicked: by its predecessor leaving the queue,
or by a settle, release, reset or configure in this process that may have freed room.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ..errors import RateLimitTimeout


class Waiter:
    """One caller in a local queue; ``future`` exists only while it sleeps."""

    __slots__ = ("future", "kicked", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[bool] | None = None  # set while it sleeps
        self.kicked = False  # woken while not sleeping: ask Redis again at once


async def sleep(
    waiter: Waiter,
    delay: float | None,
    deadline: float | None,
    timeout: float | None,
    blocker: str,
) -> None:
    """Sleep ``delay`` seconds (None: until kicked) or until kicked; raise at the deadline."""
    if waiter.kicked:
        waiter.kicked = False
        return
    loop = waiter.loop
    when = None if delay is None else loop.time() + delay
    at_deadline = deadline is not None and (when is None or deadline <= when)
    if at_deadline:
        when = deadline
    fut = waiter.future = loop.create_future()
    timer = None if when is None else loop.call_at(when, _set, fut, False)
    try:
        kicked = await fut
    finally:
        waiter.future = None
        if timer is not None:
            timer.cancel()
    if at_deadline and not kicked:
        raise RateLimitTimeout(blocker, timeout if timeout is not None else 0.0)


def _set(fut: asyncio.Future[bool], kicked: bool) -> None:
    if not fut.done():
        fut.set_result(kicked)


def drop_stranded(queue: deque[Waiter]) -> None:
    """Drop the heads stranded on a loop closed under them (a notebook restarting)."""
    while queue and queue[0].loop.is_closed():
        queue.popleft()


def kick_head(queue: deque[Waiter]) -> None:
    drop_stranded(queue)
    if queue:
        head = queue[0]
        if head.future is not None and not head.future.done():
            head.future.set_result(True)
        else:
            head.kicked = True

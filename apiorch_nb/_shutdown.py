"""Closes a loop-bound resource (an aiohttp session, a redis.asyncio client) on its own
loop when that loop shuts down, even if nobody calls its close method."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable


async def close_at_shutdown(close: Callable[[], Awaitable[object]]) -> AsyncGenerator[None, None]:
    """A keeper: started once (``await keeper.__anext__()``) it parks on its `yield`; the
    loop's ``shutdown_asyncgens`` (which ``asyncio.run`` calls), garbage collection on that
    loop, or ``await keeper.aclose()`` finalises it, and it awaits ``close()`` there."""
    try:
        yield
    finally:
        await close()

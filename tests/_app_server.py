"""An inline aiohttp app on a free 127.0.0.1 port, for tests whose handler is their own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web


@asynccontextmanager
async def serving(app: web.Application, **runner_options: Any) -> AsyncIterator[str]:
    """Serve `app` on a free loopback port; yield its base URL, ``http://127.0.0.1:PORT``.

    `runner_options` go to `web.AppRunner` (``shutdown_timeout``, ``handler_cancellation``).
    """
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()

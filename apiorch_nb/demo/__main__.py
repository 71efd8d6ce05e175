"""``python -m apiorch_nb.demo``: serve the demo API until Ctrl-C or SIGTERM.

The first line on stdout is the base URL and nothing else, so a script (or a test that
passes ``--port 0``) can read where the server is listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from ._server import DemoServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m apiorch_nb.demo",
        description="Serve the apiorch_nb demo API on a loopback address.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback IP (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every route")
    parser.add_argument("--no-log", action="store_true", help="do not keep a request log")
    return parser


async def _serve(server: DemoServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Windows has no loop signal handlers; Ctrl-C still arrives as KeyboardInterrupt.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with server:
        print(server.url, flush=True)
        print("apiorch_nb demo server running; Ctrl-C to stop", file=sys.stderr, flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        server = DemoServer(
            args.host,
            args.port,
            latency_ms=args.latency_ms,
            log_requests=not args.no_log,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(server))
    return 0


if __name__ == "__main__":
    sys.exit(main())

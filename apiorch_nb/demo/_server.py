"""DemoServer: run the demo app on 127.0.0.1, on this loop or in a background thread."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from types import TracebackType

from aiohttp import web

from ._app import build_app
from ._log import RequestLog, RequestRecord, _record_middleware
from ._state import DemoState, LimitViolation

#: Seconds an in-flight handler may still take once stop() begins, before it is cancelled.
_SHUTDOWN_GRACE_S = 0.25
#: Seconds stop() waits for the background thread before giving up.
_THREAD_JOIN_S = 10.0


def _check_loopback(host: str) -> str:
    """Return `host` if it is a loopback IP literal; the demo never listens elsewhere."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"host must be a loopback IP such as 127.0.0.1, got {host!r}") from None
    if not address.is_loopback:
        raise ValueError(f"host must be a loopback IP such as 127.0.0.1, got {host!r}")
    return host


class DemoServer:
    """The demo API on 127.0.0.1, for tests, tutorials and benchmarks.

    Three ways to run it: ``async with DemoServer() as srv`` serves on the current
    loop; ``with DemoServer() as srv`` (or `start()` / `stop()`) serves from a daemon
    thread with its own loop, for sync code and notebooks; ``python -m
    apiorch_nb.demo`` serves until interrupted. Port 0 picks a free port; read
    `srv.url` once it runs.

    Example::

        async with DemoServer(latency_ms=20) as srv:
            async with aiohttp.ClientSession() as s:
                await s.get(f"{srv.url}/users/1")
            assert srv.count("/users/1") == 1
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency_ms: float = 0.0,
        log_requests: bool = True,
        log_limit: int = 100_000,
    ) -> None:
        if latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {latency_ms}")
        self.host = _check_loopback(host)
        self._requested_port = port
        self._log = RequestLog(log_limit, enabled=log_requests)
        self._state = DemoState(log=self._log, latency_ms=latency_ms, initial_latency_ms=latency_ms)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        # Thread mode only.
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    # -- knobs and introspection -------------------------------------------------

    @property
    def latency_ms(self) -> float:
        """Delay added to every route; may be changed while the server runs."""
        return self._state.latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"latency_ms must be >= 0, got {value}")
        self._state.latency_ms = value

    @property
    def down(self) -> set[str]:
        """Services whose `/health/{service}` answers 503; tests add and remove names."""
        return self._state.down

    @property
    def running(self) -> bool:
        return self._port is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("DemoServer is not running")
        return self._port

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def log(self) -> list[RequestRecord]:
        """A copy of every logged request, in arrival order."""
        return self._log.records()

    @property
    def violations(self) -> list[LimitViolation]:
        """Every 429 the `/limited/{key}` limiter has issued since the last reset."""
        return self._state.violation_list()

    def requests(
        self,
        path: str | None = None,
        *,
        prefix: str | None = None,
        method: str | None = None,
    ) -> list[RequestRecord]:
        """Logged requests with exactly `path`, starting with `prefix`, and/or `method`."""
        wanted = method.upper() if method is not None else None
        return [
            r
            for r in self._log.records()
            if (path is None or r.path == path)
            and (prefix is None or r.path.startswith(prefix))
            and (wanted is None or r.method == wanted)
        ]

    def count(
        self,
        path: str | None = None,
        *,
        prefix: str | None = None,
        method: str | None = None,
    ) -> int:
        """How many logged requests match; same filters as `requests()`."""
        return len(self.requests(path, prefix=prefix, method=method))

    def reset(self) -> None:
        """Clear the log, flaky counters, limiter windows, violations and down services.

        Latency goes back to the constructor's value, so a test that slows the shared
        session server down cannot slow the next one.
        """
        self._state.reset()

    def __repr__(self) -> str:
        if not self.running:
            return f"<DemoServer stopped logged={len(self._log)}>"
        mode = "thread" if self._thread is not None else "loop"
        return f"<DemoServer {self.url} mode={mode} logged={len(self._log)}>"

    # -- async mode ---------------------------------------------------------------

    async def __aenter__(self) -> DemoServer:
        await self._astart()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._astop()

    async def _astart(self) -> None:
        if self._runner is not None:
            raise RuntimeError("DemoServer is already running")
        app = build_app(self._state, [_record_middleware(self._log)])
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=_SHUTDOWN_GRACE_S,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def _astop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._port = None
        # Wake sleeping handlers first so shutdown need not wait out the grace period.
        self._state.begin_stopping()
        await runner.cleanup()

    # -- thread mode --------------------------------------------------------------

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> DemoServer:
        """Serve from a daemon thread with its own loop; return once it accepts connections.

        Raises:
            RuntimeError: already running.
            OSError: the port could not be bound.
        """
        if self._thread is not None or self._runner is not None:
            raise RuntimeError("DemoServer is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._thread_main, args=(ready, failure), name="apiorch-demo", daemon=True
        )
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        self._thread = thread
        return self

    def stop(self) -> None:
        """Stop a server started with `start()`; returns once its thread has ended."""
        thread, loop, event = self._thread, self._loop, self._stop_event
        if thread is None or loop is None or event is None:
            return
        loop.call_soon_threadsafe(event.set)
        thread.join(_THREAD_JOIN_S)
        if thread.is_alive():
            raise RuntimeError("DemoServer thread did not stop in time")
        self._thread = None

    def _thread_main(self, ready: threading.Event, failure: list[BaseException]) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop_event = asyncio.Event()
            try:
                await self._astart()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                await self._stop_event.wait()
            finally:
                await self._astop()

        try:
            asyncio.run(serve())
        finally:
            self._loop = None
            self._stop_event = None
            if not ready.is_set():  # never let start() wait forever
                failure.append(RuntimeError("DemoServer thread ended before it was ready"))
                ready.set()

"""`LocalRedis`: a throwaway redis-server on 127.0.0.1, for tutorials, tests and benches.

Shared limits and caches need a real Redis; this starts Debian's ``redis-server`` on a
free loopback port with no persistence, in a temporary directory, and stops it again.
A missing server is a clear error naming the package to install, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

#: Seconds to wait for a fresh server to answer PING.
START_TIMEOUT_S = 10.0


class LocalRedis:
    """A redis-server process bound to 127.0.0.1; ``url`` is its ``redis://`` address.

    Example::

        with LocalRedis() as redis:
            orchestrator = APIOrchestrator(config, limiter=redis.url)
    """

    def __init__(
        self,
        *,
        workdir: Path | None = None,
        binary: str = "redis-server",
        cpu: int | None = None,
    ) -> None:
        """`cpu` pins the server process to that core, where the platform allows it."""
        self._binary = binary
        self._workdir = workdir
        self._cpu = cpu
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @staticmethod
    def available(binary: str = "redis-server") -> bool:
        """True if a redis-server can be started here."""
        return shutil.which(binary) is not None

    @property
    def url(self) -> str:
        if self._proc is None:
            raise RuntimeError("LocalRedis is not running; call start() first")
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> LocalRedis:
        """Start the server and wait until it answers; returns self.

        Raises:
            RuntimeError: no redis-server is installed, or it did not come up.
        """
        binary = shutil.which(self._binary)
        if binary is None:
            raise RuntimeError(
                "redis-server is missing: install it with "
                "`apt-get update && apt-get install -y redis-server`"
            )
        workdir = self._workdir
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="apiorch-redis-")
            workdir = Path(self._tmp.name)
        self.port = _free_port()
        self._proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(workdir), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            if self._cpu is not None and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(self._proc.pid, {self._cpu})
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_answering(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"on 127.0.0.1:{self.port}" if self._proc is not None else "stopped"
        return f"<LocalRedis {state}>"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

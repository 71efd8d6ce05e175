"""The processes `run.py` starts: demo servers, the dataknobs-fsm venv and its worker.

The servers run in their own processes so they never share the client's GIL; when the
machine has at least two CPUs, servers get one core and every client process another.
Each process is ended by its own handle, never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from _harness import LOOPBACK_PREFIX

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DATAKNOBS_VENV = BENCH / ".venv-dataknobs"
DATAKNOBS_REQUIREMENTS = BENCH / "requirements-dataknobs.txt"
_START_TIMEOUT_S = 20.0
_INSTALL_TIMEOUT_S = 600.0


def plan_cpus() -> tuple[int | None, int | None, str]:
    """(server CPU, client CPU, a sentence saying what was done) and pin this process."""
    if not hasattr(os, "sched_setaffinity"):
        return None, None, "not pinned: os.sched_setaffinity is unavailable on this platform"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, f"not pinned: only CPU {cpus} is available"
    server, client = cpus[0], cpus[1]
    os.sched_setaffinity(0, {client})
    return server, client, f"pinned: demo servers on CPU {server}, clients on CPU {client}"


class DemoServerProcess:
    """``python -m apiorch_nb.demo --port 0`` in a subprocess, ready once it answers."""

    def __init__(self, *, log_requests: bool, cpu: int | None, stderr_path: Path) -> None:
        self.log_requests = log_requests
        self.cpu = cpu
        self.stderr_path = stderr_path
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: TextIO | None = None

    def start(self) -> str:
        cmd = [sys.executable, "-m", "apiorch_nb.demo", "--host", "127.0.0.1", "--port", "0"]
        if not self.log_requests:
            cmd.append("--no-log")
        self.stderr_path.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = self.stderr_path.open("w")
        self._proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        if self.cpu is not None:
            os.sched_setaffinity(self._proc.pid, {self.cpu})
        self.url = self._read_url()
        self._wait_until_answering()
        return self.url

    def _read_url(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], _START_TIMEOUT_S)
        line = self._proc.stdout.readline().strip() if ready else ""
        if not line.startswith(LOOPBACK_PREFIX):
            self.stop()
            raise RuntimeError(
                f"demo server did not print a 127.0.0.1 URL (got {line!r}); see {self.stderr_path}"
            )
        return line

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/data/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"demo server at {self.url} never answered") from None
                time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def ensure_dataknobs_venv(log_path: Path) -> Path:
    """The worker venv's python, created and filled on first use (about 300 MB).

    aiohttp is pinned to the version this process runs, so both client processes use the
    same HTTP stack. A marker records what was installed; a changed pin reinstalls.

    Raises:
        RuntimeError: the venv could not be created or pip failed (the log says why).
    """
    python = DATAKNOBS_VENV / "bin" / "python"
    wanted = f"{DATAKNOBS_REQUIREMENTS.read_text()}aiohttp=={aiohttp.__version__}\n"
    marker = DATAKNOBS_VENV / ".installed"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        base = getattr(sys, "_base_executable", sys.executable)
        steps = [
            [base, "-m", "venv", str(DATAKNOBS_VENV)],
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "-r",
                str(DATAKNOBS_REQUIREMENTS),
                f"aiohttp=={aiohttp.__version__}",
            ],
        ]
        for cmd in steps:
            print(f"$ {' '.join(cmd)}", file=log, flush=True)
            try:
                done = subprocess.run(cmd, stdout=log, stderr=log, timeout=_INSTALL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"{cmd[2]} timed out; see {log_path}") from None
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd[1:4])} failed; see {log_path}")
    marker.write_text(wanted)
    return python


def run_dataknobs_worker(
    python: Path, url: str, audit_url: str, runs: int, scenarios: list[str], out: Path
) -> dict[str, Any]:
    """Run the worker to completion and return its JSON.

    Raises:
        RuntimeError: the worker exited with an error (its last stderr line says why).
    """
    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    cmd = [str(python), str(BENCH / "_dataknobs_worker.py"), "--url", url]
    cmd += ["--audit-url", audit_url, "--runs", str(runs), "--out", str(out)]
    cmd += ["--scenarios", *scenarios]
    done = subprocess.run(cmd, cwd=BENCH, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not out.exists():
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise RuntimeError(lines[-1])
    result: dict[str, Any] = json.loads(out.read_text())
    return result

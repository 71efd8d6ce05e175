"""JupyterLab on 127.0.0.1 and Debian's chromium driven by Playwright, for the browser tests.

One JupyterLab server and one chromium serve all the browser tests (package scope: both
stop when the last browser test is done). JupyterLab runs from this venv's Python, with a
random token and everything it writes (notebooks, settings, workspaces, runtime files, IPython
profile) in a temporary directory. Only the per-user Jupyter paths are redirected, so the
prebuilt lab extensions in ``<venv>/share/jupyter/labextensions`` (ipywidgets, plotly) are
still found. Nothing reaches outside 127.0.0.1: the news feed and the update check are off.

The same server also serves Notebook 7 (``/tree``, ``/notebooks/<file>.ipynb``): the
``notebook`` package (the test extra) enables its server extension in this venv, and its
pages are the same JupyterLab components (``.jp-NotebookPanel``, the same Run menu).

Chromium is Debian's ``/usr/bin/chromium``, never a downloaded one. A missing chromium is a
failure, not a skip: CI installs it (``.ci/run``), and this test must run there.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from playwright.sync_api import BrowserContext, Locator, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

CHROMIUM = Path("/usr/bin/chromium")
#: Headless, and no background connections: this machine's closed network refuses them.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

#: Seconds for JupyterLab to answer /api/status, and for the first page to show a kernel.
_SERVER_START_S = 90.0
_SERVER_STOP_S = 20.0
#: Playwright's default wait, in ms; a cold first page load (JS bundles, kernel) is slow.
_DEFAULT_WAIT_MS = 60_000

KERNEL_NAME = "Python 3 (ipykernel)"
#: How a traceback or a UsageError starts a line of a cell's stderr output.
_RAISED = re.compile(r"^\w*(Error|Exception)\b", re.MULTILINE)
#: The visible notebook. JupyterLab keeps other documents in the DOM, hidden.
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class JupyterLab:
    """A JupyterLab server process on 127.0.0.1 with its own temporary root and paths."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.root = home / "root"
        self.token = secrets.token_hex(24)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "jupyterlab.log"
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        dirs = {
            name: self.home / name
            for name in ("root", "config", "data", "runtime", "ipython", "settings", "workspaces")
        }
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        # No "get Jupyter news?" toast in the screenshots, and no request for the feed.
        notification = dirs["settings"] / "@jupyterlab" / "apputils-extension"
        notification.mkdir(parents=True)
        (notification / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(dirs["config"]),
            "JUPYTER_DATA_DIR": str(dirs["data"]),
            "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
            "JUPYTER_PLATFORM_DIRS": "1",
            "IPYTHONDIR": str(dirs["ipython"]),
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        }
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.open_browser=False",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={dirs['root']}",
            "--ServerApp.terminals_enabled=False",
            # CI runs as root.
            "--ServerApp.allow_root=True",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            f"--LabApp.user_settings_dir={dirs['settings']}",
            f"--LabApp.workspaces_dir={dirs['workspaces']}",
        ]
        with self.log_path.open("wb") as log:
            # Its own process group: at the end, nothing it started (kernels) may outlive it.
            self._process = subprocess.Popen(
                command,
                cwd=dirs["root"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + _SERVER_START_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                pytest.fail(f"JupyterLab exited with {code}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status")
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
                continue
            return
        pytest.fail(
            f"JupyterLab did not answer /api/status in {_SERVER_START_S:g} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM (the server shuts its kernels down), then SIGKILL whatever is left."""
        process, self._process = self._process, None
        if process is None:
            return
        group = process.pid
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(_SERVER_STOP_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Anything left in its process group (a kernel it failed to stop) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # -- REST ------------------------------------------------------------------------------

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_sessions(self) -> None:
        """End every open notebook session and its kernel."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    # -- notebooks -------------------------------------------------------------------------

    def write_notebook(self, name: str, cells: list[str]) -> str:
        """Write `cells` as code cells of ``<root>/<name>.ipynb``; return the file name."""
        notebook = nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_code_cell(source) for source in cells],
            metadata={
                "kernelspec": {
                    "name": "python3",
                    "display_name": KERNEL_NAME,
                    "language": "python",
                }
            },
        )
        filename = f"{name}.ipynb"
        nbformat.write(notebook, self.root / filename)
        return filename

    def lab_url(self, filename: str) -> str:
        """The notebook in a workspace of its own, so no other test's tabs are restored."""
        workspace = Path(filename).stem
        return f"{self.url}/lab/workspaces/{workspace}/tree/{filename}?token={self.token}"

    def notebook7_url(self, filename: str) -> str:
        """The notebook in Notebook 7's single-document UI."""
        return f"{self.url}/notebooks/{filename}?token={self.token}"


@pytest.fixture(scope="package")
def jupyter_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """JupyterLab on 127.0.0.1, started once; stopped with all its kernels.

    Package scope: started once for the browser tests and stopped as soon as they are
    done, not kept running through the rest of the suite.
    """
    lab = JupyterLab(tmp_path_factory.mktemp("jupyterlab"))
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="package")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """A headless Debian chromium with a fresh profile, as a Playwright browser context.

    Package scope matters here: while Playwright's sync API is open it owns an event loop
    in this thread, which the suite's asyncio tests after these must not meet.
    """
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's chromium and never "
            "download one. Install it with `apt-get update && apt-get install -y chromium` "
            "(.ci/run does this in CI).",
            pytrace=False,
        )
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1800},
        )
        context.set_default_timeout(_DEFAULT_WAIT_MS)
        try:
            yield context
        finally:
            context.close()


class LabNotebook:
    """One notebook open in JupyterLab in a chromium page, and the few moves a test makes."""

    def __init__(self, page: Page, lab: JupyterLab) -> None:
        self.page = page
        self.lab = lab
        #: Uncaught page errors and console errors, for failure messages.
        self.console: list[str] = []
        #: Requests the page made anywhere but this JupyterLab (there should be none).
        self.outside: list[str] = []
        page.on("pageerror", lambda exc: self.console.append(f"pageerror: {exc}"))
        page.on(
            "request",
            lambda request: (
                None
                if request.url.startswith((lab.url + "/", "data:", "blob:"))
                else self.outside.append(request.url)
            ),
        )
        page.on(
            "console",
            lambda msg: (
                self.console.append(f"console.{msg.type}: {msg.text}")
                if msg.type == "error"
                else None
            ),
        )

    @property
    def panel(self) -> Locator:
        return self.page.locator(NOTEBOOK)

    def open(self, name: str, cells: list[str]) -> None:
        """Write the notebook, open it and wait until its kernel is idle."""
        filename = self.lab.write_notebook(name, cells)
        self.page.goto(self.lab.lab_url(filename))
        self.page.locator(
            ".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel",
            has_text=re.compile(rf"^{re.escape(filename)}$"),
        ).wait_for(timeout=_SERVER_START_S * 1000)
        self._wait_for_kernel()

    def _wait_for_kernel(self) -> None:
        # The indicator also says "idle" before the session has a kernel ("No Kernel"), and
        # Run All then asks which kernel to start; so wait for the kernel's name as well.
        self.panel.locator(".jp-KernelName", has_text=KERNEL_NAME).wait_for(
            timeout=_SERVER_START_S * 1000
        )
        self.panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(
            timeout=_SERVER_START_S * 1000
        )

    def run_all_cells(self) -> None:
        """Run > Run All Cells from the menu bar, as a user would."""
        self.panel.locator(".jp-Notebook").click()
        self.page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        self.page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
        # Run All marks the first cell [*] at once; say so here if it did not start.
        started = self.panel.locator(".jp-CodeCell .jp-InputArea-prompt").first.filter(
            has_text=re.compile(r"\[(\*|\d+)\]")
        )
        try:
            started.wait_for(timeout=10_000)
        except PlaywrightTimeoutError:
            pytest.fail("Run > Run All Cells did not start the first cell", pytrace=False)

    def wait_until_executed(self, timeout_s: float = 60) -> None:
        """Wait until Run All is over, then fail with the output of any cell that raised.

        Run All turns every prompt into ``[*]:``; each gets its count (``[n]:``) as it
        finishes. After a cell raises, the kernel drops the rest and their prompts go back
        to ``[ ]:``. So it is over once the first cell has a count and no prompt is ``[*]``.
        """
        self.page.wait_for_function(
            r"""(selector) => {
                const prompts = [...document.querySelectorAll(
                    selector + ' .jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent);
                return prompts.length > 0 && /\[\d+\]/.test(prompts[0]) &&
                    !prompts.some(p => p.includes('[*]'));
            }""",
            arg=NOTEBOOK,
            timeout=timeout_s * 1000,
        )
        # Tracebacks and IPython's one-line UsageError both go out as stderr, like warnings.
        stderr = self.panel.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
        ).all_inner_texts()
        failures = [text for text in stderr if _RAISED.search(text)]
        prompts = self.panel.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
        skipped = [i for i, prompt in enumerate(prompts) if not re.search(r"\[\d+\]", prompt)]
        assert not failures and not skipped, (
            f"a cell raised (cells {skipped} did not run):\n" + "\n".join(failures)
        )

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path))
        return path

    def diagnostics(self) -> str:
        return "\n".join(self.console[-20:]) or "(no console errors)"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()


class Notebook7(LabNotebook):
    """One notebook open in Notebook 7 (``/notebooks/<file>.ipynb``) on the same server.

    Its notebook page holds one document, titled in ``#jp-title``; the notebook panel, its
    toolbar (kernel name, execution indicator), prompts and Run menu are JupyterLab's.
    """

    def open(self, name: str, cells: list[str]) -> None:
        filename = self.lab.write_notebook(name, cells)
        self.page.goto(self.lab.notebook7_url(filename))
        # Without the notebook package, /notebooks/... is a 404 (or a lab page, never this).
        app = self.page.evaluate(
            "() => { const c = document.getElementById('jupyter-config-data');"
            " return c ? JSON.parse(c.textContent).appName || null : null; }"
        )
        if app != "Jupyter Notebook":
            pytest.fail(
                f"{self.lab.notebook7_url(filename)} is not Notebook 7 (appName {app!r}): is "
                "the `notebook>=7` test extra installed? (pip install -e '.[test]')",
                pytrace=False,
            )
        self.page.locator("#jp-title", has_text=re.compile(rf"^{re.escape(name)}$")).wait_for(
            timeout=_SERVER_START_S * 1000
        )
        self._wait_for_kernel()


@contextlib.contextmanager
def _open_page(
    request: pytest.FixtureRequest,
    chromium: BrowserContext,
    jupyter_lab: JupyterLab,
    kind: type[LabNotebook],
) -> Iterator[LabNotebook]:
    page = chromium.new_page()
    lab_notebook = kind(page, jupyter_lab)
    try:
        yield lab_notebook
    finally:
        if request.node.stash.get(_CALL_FAILED, False):
            lab_notebook.screenshot(f"{request.node.name}-failed.png")
            print(f"JupyterLab log:\n{jupyter_lab.log_tail()}")
            print(f"browser console:\n{lab_notebook.diagnostics()}")
        page.close()
        jupyter_lab.shutdown_sessions()


@pytest.fixture
def notebook(
    request: pytest.FixtureRequest, chromium: BrowserContext, jupyter_lab: JupyterLab
) -> Iterator[LabNotebook]:
    """A fresh chromium page on the session's JupyterLab; its kernels end with the test.

    A failed test leaves ``test-artifacts/<test>-failed.png`` and the server log's tail.
    """
    with _open_page(request, chromium, jupyter_lab, LabNotebook) as lab_notebook:
        yield lab_notebook


@pytest.fixture
def notebook7(
    request: pytest.FixtureRequest, chromium: BrowserContext, jupyter_lab: JupyterLab
) -> Iterator[LabNotebook]:
    """As `notebook`, but the page is Notebook 7's UI on the same server."""
    with _open_page(request, chromium, jupyter_lab, Notebook7) as lab_notebook:
        yield lab_notebook

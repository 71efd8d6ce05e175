"""Running on the kernel's own event loop.

A cell magic cannot be async, so `rewrite_cell` (an IPython cleanup input transformer)
turns a ``%%orchestrate`` cell, or a line that is just ``%orchestrate ...``, into a
top-level ``await``. IPython then runs the cell as a task on the kernel's loop, where
ipykernel's stop button cancels it: the run records what finished and what was cancelled,
and the kernel stays usable.

The spec's ``asyncio.run(orchestrator.execute(...))`` cannot work inside a running loop;
`enable_asyncio_run` is the documented one-line opt-in (nest-asyncio), and without it the
RuntimeError is answered with a short message saying what to do.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any

from IPython.core.error import UsageError

_CELL = "%%orchestrate"
_LINE = "%orchestrate"
_HERE = "apiorch_nb.notebook.loop"
_ASYNCIO_RUN_MESSAGE = "asyncio.run() cannot be called from a running event loop"
_HINT = (
    "asyncio.run() cannot run inside a notebook, whose event loop is already running.\n"
    "Either await it directly:          result = await orchestrator.execute(data)\n"
    "or opt in once per kernel:         import apiorch_nb; apiorch_nb.enable_asyncio_run()"
)


def rewrite_cell(lines: list[str]) -> list[str]:
    """Turn ``%%orchestrate`` cells and bare ``%orchestrate`` lines into awaits."""
    if not lines:
        return lines
    head = lines[0].rstrip("\n")
    magic, _, rest = head.partition(" ")
    if magic == _CELL:
        body = "".join(lines[1:])
        return [f"await __import__({_HERE!r}, fromlist=['_']).run_cell({rest!r}, {body!r})\n"]
    if not any(line.startswith(_LINE + " ") for line in lines):
        return lines
    out = []
    for line in lines:
        if line.startswith(_LINE + " ") and not line.rstrip().endswith("?"):
            args = line.rstrip("\n")[len(_LINE) + 1 :]
            line = f"await __import__({_HERE!r}, fromlist=['_']).run_cell({args!r}, None)\n"
        out.append(line)
    return out


async def run_cell(line: str, cell: str | None) -> Any:
    """What a rewritten cell awaits: the extension's magics run it on this loop."""
    from IPython import get_ipython

    shell = get_ipython()
    magics = shell.magics_manager.registry.get("OrchestrateMagics") if shell else None
    if magics is None:
        raise UsageError("%orchestrate needs the extension: run `%load_ext apiorch_nb` first")
    return await magics.run_async(line, cell)


class InterruptWakesLoop:
    """Make an interrupt wake the kernel's event loop at once.

    ipykernel turns SIGINT into a cancellation of the running cell's task, but its handler
    only runs once the loop wakes up for some other reason: with every call waiting on the
    network, that can be many seconds. Registering a (no-op) asyncio signal handler makes
    asyncio install its wakeup fd, so the signal itself wakes the loop; the Python-level
    handler is then put back, so ipykernel's (or IPython's) own handling is unchanged.
    """

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # terminal IPython: Ctrl-C already interrupts the loop directly
        previous = signal.getsignal(signal.SIGINT)
        try:
            loop.add_signal_handler(signal.SIGINT, _noop)
        except (NotImplementedError, RuntimeError, ValueError):
            return  # no signal support on this loop or platform
        signal.signal(signal.SIGINT, previous)
        self.loop = loop

    def uninstall(self) -> None:
        loop, self.loop = self.loop, None
        if loop is None or loop.is_closed():
            return
        previous = signal.getsignal(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, previous)


def _noop() -> None:
    """The loop-level SIGINT callback; the real handling stays with the kernel."""


def enable_asyncio_run() -> None:
    """Let ``asyncio.run(...)`` work in this notebook (applies nest-asyncio to its loop).

    Prefer ``await orchestrator.execute(...)`` in notebooks; this exists so scripts that
    call ``asyncio.run`` can be pasted into a cell unchanged. Timeouts still fire.
    """
    import asyncio

    import nest_asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    nest_asyncio.apply(loop)


class AsyncioRunHint:
    """A custom exception handler: explains the asyncio.run error, passes the rest on."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.previous = (shell.custom_exceptions, shell.CustomTB)

    def install(self) -> None:
        types = tuple({*self.previous[0], RuntimeError})
        self.shell.set_custom_exc(types, self)

    def uninstall(self) -> None:
        types, handler = self.previous
        self.shell.custom_exceptions = types
        self.shell.CustomTB = handler

    def __call__(
        self, shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None
    ) -> Any:
        if isinstance(value, RuntimeError) and _ASYNCIO_RUN_MESSAGE in str(value):
            print(f"RuntimeError: {value}\n\n{_HINT}")
            return None
        previous_types, previous_handler = self.previous
        if previous_types and issubclass(etype, previous_types):
            return previous_handler(etype, value, tb, tb_offset=tb_offset)
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return None

"""The notebook layer in a real Jupyter kernel (ipykernel via jupyter_client / nbclient).

The kernel is a separate process; it talks HTTP to the session's demo server on 127.0.0.1.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from apiorch_nb.demo import DemoServer

pytestmark = pytest.mark.timeout(180)


class Kernel:
    """A running kernel and a way to execute a cell and collect what it showed."""

    def __init__(self, manager: KernelManager, client: BlockingKernelClient) -> None:
        self.manager = manager
        self.client = client

    def start(self, code: str) -> str:
        return self.client.execute(code)

    def collect(self, msg_id: str, timeout: float = 60) -> tuple[str, list[dict[str, Any]]]:
        """Wait for the cell to finish; return its status and iopub outputs."""
        outputs: list[dict[str, Any]] = []
        while True:
            msg = self.client.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "status" and msg["content"]["execution_state"] == "idle":
                break
            if kind in ("stream", "error", "execute_result", "display_data"):
                outputs.append({"type": kind, **msg["content"]})
        while True:
            reply = self.client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]["status"], outputs

    def run(self, code: str) -> tuple[str, list[dict[str, Any]]]:
        return self.collect(self.start(code))

    def collect_reply(self, msg_id: str, timeout: float = 60) -> str:
        """The status of the execute reply to `msg_id` (after its iopub messages were read)."""
        while True:
            reply = self.client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return str(reply["content"]["status"])


@pytest.fixture(scope="module")
def kernel(demo_server: DemoServer) -> Iterator[Kernel]:
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=60)
    k = Kernel(manager, client)
    status, _ = k.run(f"%load_ext apiorch_nb\nbase = {demo_server.url!r}")
    assert status == "ok"
    try:
        yield k
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def _text(outputs: list[dict[str, Any]]) -> str:
    parts = []
    for out in outputs:
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
        parts.append(out.get("evalue", ""))
    return "\n".join(parts)


SLOW_CELL = """%%orchestrate --mode parallel r <<
###
# @name fast
GET {{base}}/delay/10

###
# @name slow
GET {{base}}/delay/20000

###
# @name slower
GET {{base}}/delay/30000
"""


def test_stop_button_cancels_at_once_keeps_finished_calls_and_kernel_stays_usable(
    kernel: Kernel, demo: DemoServer
) -> None:
    msg_id = kernel.start(SLOW_CELL)
    deadline = time.monotonic() + 20
    while demo.count(prefix="/delay") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert demo.count(prefix="/delay") == 3
    time.sleep(0.2)  # `fast` is done by now
    interrupted = time.monotonic()
    kernel.manager.interrupt_kernel()
    status, outputs = kernel.collect(msg_id)
    elapsed = time.monotonic() - interrupted
    assert status == "error"
    assert elapsed < 5.0, "the interrupt waited for the slow calls (20 s and 30 s)"
    message = _text(outputs)
    assert "interrupted: 1 call(s) finished, 2 cancelled (slow, slower)" in message
    assert "Traceback" not in message
    kinds = [set(o.get("data", {})) for o in outputs if o["type"] == "display_data"]
    assert {"text/html", "text/plain"} in kinds  # the partial run is shown
    status, outputs = kernel.run("print({k: v.state.value for k, v in r.records.items()})")
    assert status == "ok"
    assert "{'fast': 'ok', 'slow': 'cancelled', 'slower': 'cancelled'}" in _text(outputs)


def test_plain_await_execute_is_interrupted_at_once_too(kernel: Kernel, demo: DemoServer) -> None:
    code = (
        "from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator\n"
        "o = APIOrchestrator(APIOrchestrationConfig(endpoints=[\n"
        "    APIEndpoint(name='slow', url=base + '/delay/20000')]))\n"
        "await o.execute()\n"
    )
    msg_id = kernel.start(code)
    deadline = time.monotonic() + 20
    while demo.count(prefix="/delay") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    interrupted = time.monotonic()
    kernel.manager.interrupt_kernel()
    status, _ = kernel.collect(msg_id)
    assert status == "error"
    assert time.monotonic() - interrupted < 5.0
    status, outputs = kernel.run("print(o.last_run.records['slow'].state.value)\nawait o.close()")
    assert (status, _text(outputs).strip()) == ("ok", "cancelled")


def test_asyncio_run_gets_a_hint_until_the_opt_in_then_works_with_timeouts(
    kernel: Kernel, demo: DemoServer
) -> None:
    setup = (
        "import asyncio\n"
        "from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator\n"
        "h = APIOrchestrator(APIOrchestrationConfig(endpoints=[\n"
        "    APIEndpoint(name='hang', url=base + '/hang', timeout=0.3, retry_count=0),\n"
        "    APIEndpoint(name='user', url=base + '/users/3')], mode='parallel'))\n"
    )
    assert kernel.run(setup)[0] == "ok"
    status, outputs = kernel.run("asyncio.run(h.execute())")
    assert status == "error"
    text = _text(outputs)
    assert "await orchestrator.execute(data)" in text and "enable_asyncio_run()" in text
    assert "Traceback" not in text
    status, outputs = kernel.run(
        "import apiorch_nb, time\n"
        "apiorch_nb.enable_asyncio_run()\n"
        "t = time.monotonic()\n"
        "res = asyncio.run(h.execute())\n"
        "print(round(time.monotonic() - t, 1) < 5, res['hang']['error'], res['user']['id'])\n"
    )
    assert status == "ok", _text(outputs)
    assert "True endpoint 'hang': no complete response within 0.3s 3" in _text(outputs)


def test_notebook_with_a_failing_cell_fails_with_one_line_and_later_cells_run(
    demo_server: DemoServer,
) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(f"%load_ext apiorch_nb\nbase = {demo_server.url!r}"),
        nbformat.v4.new_code_cell("%%orchestrate ok <<\n###\n# @name user\nGET {{base}}/users/5\n"),
        nbformat.v4.new_code_cell(
            "%%orchestrate bad <<\n###\n# @name broken\n# @retry 0\nGET {{base}}/status/503\n"
        ),
        nbformat.v4.new_code_cell(
            "print(ok.data['user']['id'], bad.records['broken'].state.value)"
        ),
    ]
    client = NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=60)
    client.execute()
    outputs = [cell.outputs for cell in nb.cells]
    assert all(o.output_type != "stream" or o.name != "stderr" for o in outputs[1])
    # IPython prints a UsageError as one line on stderr and the cell's reply is an error
    (message,) = [o.text for o in outputs[2] if o.output_type == "stream" and o.name == "stderr"]
    assert message.startswith("UsageError: 1 of 1 endpoint(s) failed: broken: HTTP 503")
    assert "Traceback" not in message and message.count("\n") <= 2
    assert any(o.output_type == "display_data" for o in outputs[2])  # partial run shown first
    assert outputs[3][0].text.strip() == "5 failed"
    # and a runner that does not allow errors stops at that cell
    strict = NotebookClient(nbformat.from_dict(nb), kernel_name="python3", timeout=60)
    with pytest.raises(CellExecutionError) as info:
        strict.execute()
    assert "broken: HTTP 503" in str(info.value)


def _progress_messages(kernel: Kernel, code: str) -> tuple[str, list[dict[str, Any]]]:
    """Run `code`; return its status and every display/update message in order."""
    msg_id = kernel.start(code)
    return kernel.collect_reply(msg_id), _messages(kernel, msg_id)


def _messages(
    kernel: Kernel, msg_id: str, kinds: tuple[str, ...] = ("display_data", "update_display_data")
) -> list[dict[str, Any]]:
    """The iopub messages of `kinds` the cell `msg_id` sent, in order, until it is idle."""
    messages: list[dict[str, Any]] = []
    while True:
        msg = kernel.client.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages
        if msg["msg_type"] in kinds:
            messages.append({"type": msg["msg_type"], **msg["content"]})


STAGGERED = "\n".join(
    f"###\n# @name d{i}\nGET {{{{base}}}}/delay/{100 + 150 * i}\n" for i in range(6)
)


def _progress_story(messages: list[dict[str, Any]]) -> tuple[str, list[str], dict[str, Any]]:
    """The progress display's id, the texts it showed over time, and its last bundle."""
    first = next(m for m in messages if "apiorch-progress" in m["data"].get("text/html", ""))
    assert first["type"] == "update_display_data"  # shown empty first, filled by an update
    display_id = first["transient"]["display_id"]
    mine = [m for m in messages if m.get("transient", {}).get("display_id") == display_id]
    return display_id, [m["data"].get("text/plain", "") for m in mine], mine[-1]["data"]


def test_live_progress_updates_as_calls_finish_and_is_cleared_at_the_end(
    kernel: Kernel, demo: DemoServer
) -> None:
    status, messages = _progress_messages(kernel, "%%orchestrate --mode parallel\n" + STAGGERED)
    assert status == "ok"
    _, texts, last = _progress_story(messages)
    assert texts[0] == "" and texts[1].startswith("0/6 calls done")
    assert any(t.startswith(("3/6", "4/6", "5/6")) for t in texts)  # seen mid-run
    assert last == {"text/plain": ""}  # emptied: the saved notebook keeps the static result
    kinds = [set(m["data"]) for m in messages if m["type"] == "display_data"]
    assert {"application/vnd.plotly.v1+json", "text/plain"} in kinds  # the final waterfall


def test_plain_await_execute_shows_progress_and_quiet_shows_none(
    kernel: Kernel, demo: DemoServer
) -> None:
    code = (
        "from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator\n"
        "async with APIOrchestrator(APIOrchestrationConfig(mode='parallel', endpoints=[\n"
        "    APIEndpoint(name=f'd{i}', url=base + f'/delay/{100 + 150 * i}') for i in range(4)\n"
        "])) as o:\n"
        "    await o.execute()\n"
    )
    status, messages = _progress_messages(kernel, code)
    assert status == "ok"
    _, texts, last = _progress_story(messages)
    assert texts[1].startswith("0/4 calls done") and last == {"text/plain": ""}
    status, messages = _progress_messages(kernel, "%%orchestrate --quiet\n" + STAGGERED)
    assert status == "ok" and messages == []


MAP_CELL = "%%orchestrate --over rows --max-concurrent 3 m <<\n###\n# @name wait\n" + (
    "GET {{base}}/delay/{{ms}}\n"
)


def test_stop_button_keeps_every_finished_row_of_a_map_and_its_progress_ends_empty(
    kernel: Kernel, demo: DemoServer
) -> None:
    setup = "import pandas as pd\nrows = pd.DataFrame({'ms': [10, 10, 10, 20000, 20000, 20000]})"
    assert kernel.run(setup)[0] == "ok"
    msg_id = kernel.start(MAP_CELL)
    deadline = time.monotonic() + 20
    while demo.count(prefix="/delay") < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.4)  # the first rows are done and the bar has been redrawn
    interrupted = time.monotonic()
    kernel.manager.interrupt_kernel()
    kinds = ("display_data", "update_display_data", "stream", "error")
    messages = _messages(kernel, msg_id, kinds)
    assert kernel.collect_reply(msg_id) == "error"
    assert time.monotonic() - interrupted < 5.0, "the interrupt waited for the 20 s rows"
    (stderr,) = [m["text"] for m in messages if m["type"] == "stream" and m["name"] == "stderr"]
    assert stderr.strip() == (
        "UsageError: interrupted after 3 of 6 rows; stored the partial result in `m`"
    )
    _, texts, last = _progress_story([m for m in messages if "data" in m])
    assert texts[0] == "" and texts[1].startswith("0/6 rows done")
    assert any(t.startswith("3/6 rows done (3 ok)") for t in texts)
    assert last == {"text/plain": ""}
    status, outputs = kernel.run("print(m.status.tolist())")
    assert status == "ok"
    assert str(["ok"] * 3 + ["cancelled"] * 3) in _text(outputs)

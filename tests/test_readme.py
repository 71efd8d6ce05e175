"""The README's example runs as written (it uses only the demo API on 127.0.0.1)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
DOCS = README.parent / "docs"


def test_readme_python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "README has no python example"
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", blocks[0]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "Post 1 by user 7"
    assert "3 calls (3 ok)" in out.stdout


def test_readme_enrichment_example_runs_and_resumes_from_its_sqlite_cache(
    tmp_path: Path,
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    example = next(b for b in blocks if ".map(" in b)
    script = (
        "import asyncio\n"
        "import pandas as pd\n"
        "from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator\n"
        "from apiorch_nb.demo import DemoServer\n"
        "async def main():\n"
        f"    async with DemoServer(port={_free_port()}) as api:  # one URL for both runs\n"
        "        customers = pd.DataFrame({'id': [3, 1, 2]}, index=['c', 'a', 'b'])\n"
        + textwrap.indent(example, " " * 8)
        + "        print(customers.join(enriched).to_dict('index'))\n"
        "        print(api.count(prefix='/users/'))\n"
        "asyncio.run(main())\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-W", "error", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    for out in runs:
        assert out.returncode == 0, out.stderr
    first, second = (out.stdout.splitlines() for out in runs)
    assert "'c': {'id': 3, 'name': 'User 3', 'status': 'ok', 'error': None}" in first[0]
    assert first[1] == "3"  # one request per row ...
    assert "'status': 'cached'" in second[0] and second[1] == "0"  # ... and none the 2nd time
    assert (tmp_path / "enrich.db").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_readme_shows_the_two_setup_commands() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text


def test_no_readme_table_row_is_written_twice() -> None:
    rows = [line for line in README.read_text().splitlines() if line.startswith("| ")]
    repeated = sorted({row for row in rows if rows.count(row) > 1})
    assert repeated == []


def test_make_demo_sample_runs_and_shows_the_retries() -> None:
    out = subprocess.run(
        [sys.executable, "-W", "error", "-m", "apiorch_nb.demo.sample", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "5 calls (5 ok)" in out.stdout
    assert "retried" in out.stdout
    assert "the server saw 7 requests" in out.stdout


def test_readme_notebook_cell_runs_in_ipython() -> None:
    cells = re.findall(r"```\n(%%orchestrate.*?)```", README.read_text(), flags=re.DOTALL)
    assert cells, "README has no %%orchestrate example"
    script = (
        "import sys\n"
        "from IPython.testing.globalipapp import start_ipython\n"
        "from apiorch_nb.demo import DemoServer\n"
        "with DemoServer() as api:\n"
        "    ip = start_ipython()\n"
        "    ip.run_line_magic('load_ext', 'apiorch_nb')\n"
        f"    cell = {cells[0]!r}.replace('http://127.0.0.1:8765', api.url)\n"
        "    result = ip.run_cell(cell)\n"
        "    run = ip.user_ns['run']\n"
        "    auth = api.requests(path='/users/7')[0].headers['Authorization']\n"
        "    print(result.success, run.data['user']['id'], auth, api.count())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "True 7 Bearer demo-token-ada 2"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_make_demo_serves_the_demo_api_and_jupyterlab_on_the_quickstart() -> None:
    import signal
    import time
    import urllib.request

    api_port, lab_port = _free_port(), _free_port()
    command = [
        sys.executable,
        "-m",
        "apiorch_nb.demo.lab",
        "--port",
        str(api_port),
        "--no-browser",
        f"--ServerApp.port={lab_port}",
        "--IdentityProvider.token=demo-test",
    ]
    proc = subprocess.Popen(
        command, cwd=README.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        lab = f"http://127.0.0.1:{lab_port}/lab/tree/00_quickstart.ipynb?token=demo-test"
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and status != 200:
            try:
                with urllib.request.urlopen(lab, timeout=2) as resp:
                    status = resp.status
            except OSError:
                time.sleep(0.5)
        assert status == 200, "JupyterLab did not serve the quickstart notebook"
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/users/7", timeout=5) as resp:
            assert b'"id": 7' in resp.read()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert "5 calls (5 ok)" in out  # the terminal sample ran first
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{api_port}/users/7", timeout=2)
    except OSError:
        pass
    else:
        raise AssertionError("the demo API kept running after JupyterLab stopped")


def test_the_tour_run_shows_what_the_readme_says_about_its_pictures() -> None:
    """`docs/make_pictures.py`'s run (without kaleido): a queue, retries, a skip, a join."""
    import asyncio
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_pictures", DOCS / "make_pictures.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    run = asyncio.run(script.record_run())
    assert run.outcomes == {"ok": 7, "skipped": 1}
    assert run.records["upgrade-offer"].state.value == "skipped"
    recs = [r for r in run.attempt_rows() if r["endpoint"] == "recommendations"]
    assert [r["status"] for r in recs] == [503, 503, 200]
    # posts and analytics hold both slots for the demo's 25 ms (the limiter's wait depends
    # on how fast the retries come round, so it is not asserted)
    assert recs[0]["queued_ms"] > 10
    assert ("recommendations", "report", "data") in run.edges
    for picture in ("waterfall.png", "graph.png"):
        assert f"](docs/{picture})" in README.read_text()
        assert (DOCS / picture).stat().st_size < 200_000

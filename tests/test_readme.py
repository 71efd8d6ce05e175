"""The README's example runs as written (it uses only the demo API on 127.0.0.1)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


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


def test_readme_shows_the_two_setup_commands() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text


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

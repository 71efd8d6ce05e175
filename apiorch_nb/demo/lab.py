"""`make demo`: a sample run in the terminal, then the demo API and JupyterLab on the quickstart.

The demo API listens on 127.0.0.1:PORT (8765 by default, the address the README's cells
use) for as long as JupyterLab runs; Ctrl-C stops both.

    python -m apiorch_nb.demo.lab [--port 8765] [--notebook notebooks/00_quickstart.ipynb]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

from . import DemoServer
from .sample import main as sample_run


def launch(port: int, notebook: Path, extra: list[str]) -> int:
    """Run the sample, serve the demo API, and run JupyterLab until it exits."""
    asyncio.run(sample_run(0))  # the terminal taste, on a throwaway port
    with DemoServer(port=port) as api:
        print(f"\ndemo API on {api.url}; opening JupyterLab on {notebook} (Ctrl-C stops both)")
        command = [sys.executable, "-m", "jupyterlab", str(notebook), "--ServerApp.ip=127.0.0.1"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI machines
            command.append("--ServerApp.allow_root=True")
        command += extra
        try:
            return subprocess.call(command)
        except KeyboardInterrupt:
            return 0


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--notebook", type=Path, default=Path("notebooks/00_quickstart.ipynb"))
    args, extra = parser.parse_known_args()
    sys.exit(launch(args.port, args.notebook, extra))


if __name__ == "__main__":
    cli()

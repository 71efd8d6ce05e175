"""Regenerate the README's pictures: ``docs/waterfall.png`` and ``docs/graph.png``.

Runs one small HYBRID orchestration against the demo API on 127.0.0.1 (a login, a
fan-out with a flaky, rate-limited call that retries, a skipped call and a join), then
exports `Run.timeline` and `Run.dag_chart` with plotly's ``write_image``.

kaleido renders through a Chrome it finds via choreographer, which honours ``BROWSER_PATH``;
this script points it at Debian's chromium unless ``--browser`` or ``BROWSER_PATH`` says
otherwise. Neither library downloads a browser on its own, and neither does this script.

    make pictures            # installs the `docs` extra (kaleido), then runs this
    python docs/make_pictures.py [--out docs] [--browser /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, OrchestrationMode, Run
from apiorch_nb.demo import DemoServer

DOCS = Path(__file__).resolve().parent
DEFAULT_BROWSER = "/usr/bin/chromium"  # Debian's package
SIZE = {"width": 1000, "height": 450}  # layout pixels; scale 1 keeps the PNGs small


def is_basic(context: dict[str, object]) -> bool:
    """The condition of ``upgrade-offer``: only basic users get one (user 7 is premium)."""
    user = context["user"]
    return isinstance(user, dict) and user.get("user_type") == "basic"


def build_config(base: str) -> APIOrchestrationConfig:
    """login -> user -> (posts, analytics, recommendations, upgrade-offer?) -> report."""
    return APIOrchestrationConfig(
        endpoints=[
            APIEndpoint("login", base + "/auth", method="POST", body={"username": "ada"}),
            APIEndpoint("status", base + "/health/search"),
            APIEndpoint(
                "user",
                base + "/users/{user_id}",
                headers={"Authorization": "Bearer {login.token}"},
                depends_on=["login"],
            ),
            APIEndpoint("posts", base + "/users/{user.id}/posts", depends_on=["user"]),
            APIEndpoint("analytics", base + "/analytics/users/{user.id}", depends_on=["user"]),
            # fails twice with 503; the limiter (2 per 0.3 s) holds back its third try
            APIEndpoint(
                "recommendations",
                base + "/flaky/recs",
                params={"fail": 2},
                retry_delay=0.05,
                rate_limit=2,
                rate_limit_window=0.3,
                depends_on=["user"],
            ),
            APIEndpoint(
                "upgrade-offer", base + "/profile", condition=is_basic, depends_on=["user"]
            ),
            APIEndpoint(
                "report",
                base + "/enrich",
                method="POST",
                body={"user": "{analytics.user_id}", "views": "{analytics.page_views}"},
                depends_on=["posts", "analytics", "recommendations"],
            ),
        ],
        mode=OrchestrationMode.HYBRID,
        max_concurrent=2,  # the fan-out queues a call
        total_timeout=10.0,
    )


async def record_run() -> Run:
    """Run the orchestration once against a fresh demo API with some latency per route."""
    async with DemoServer(latency_ms=25) as api:
        orchestrator = APIOrchestrator(build_config(api.url))
        async with orchestrator:
            await orchestrator.execute({"user_id": 7})
    run = orchestrator.last_run
    assert run is not None
    return run


def use_browser(path: str | None) -> str:
    """Point kaleido (through choreographer's ``BROWSER_PATH``) at an installed browser."""
    browser = path or os.environ.get("BROWSER_PATH") or DEFAULT_BROWSER
    if not os.access(browser, os.X_OK):
        raise SystemExit(f"no browser at {browser}: install chromium or pass --browser PATH")
    os.environ["BROWSER_PATH"] = browser
    return browser


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOCS, help="directory for the PNGs")
    parser.add_argument("--browser", help=f"Chrome or Chromium to render with ({DEFAULT_BROWSER})")
    args = parser.parse_args(argv)
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise SystemExit("kaleido is not installed: run `make pictures`") from None
    browser = use_browser(args.browser)
    run = asyncio.run(record_run())
    print(run.summary())
    args.out.mkdir(parents=True, exist_ok=True)
    pictures = {"waterfall.png": run.timeline(), "graph.png": run.dag_chart()}
    for name, fig in pictures.items():
        path = args.out / name
        fig.write_image(path, **SIZE)
        print(f"wrote {path} ({path.stat().st_size // 1024} KB) with {browser}")


if __name__ == "__main__":
    main(sys.argv[1:])

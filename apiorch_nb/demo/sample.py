"""`make demo`: start the demo API and run a sample orchestration against it.

Shows the engine end to end on loopback: a dependency graph with a parallel fan-out, a
flaky endpoint that recovers by retrying, a rate-limited endpoint, a condition, and the
per-call record as a text table with a waterfall.

    python -m apiorch_nb.demo.sample [--port 8765]
"""

from __future__ import annotations

import argparse
import asyncio
import json

from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, OrchestrationMode, Run
from apiorch_nb.demo import DemoServer

_BAR_WIDTH = 40


def build_config(base: str) -> APIOrchestrationConfig:
    """user -> (posts, analytics, premium?) and a flaky service, as one graph."""
    return APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="user", url=base + "/users/{user_id}"),
            APIEndpoint(
                name="posts",
                url=base + "/users/{user.id}/posts",
                response_parser=lambda r: r.json()["posts"],
                depends_on=["user"],
            ),
            APIEndpoint(
                name="analytics",
                url=base + "/analytics/users/{user.id}",
                rate_limit=2,
                depends_on=["user"],
            ),
            APIEndpoint(
                name="profile",
                url=base + "/profile",
                condition=lambda ctx: ctx["user"]["user_type"] == "premium",
                depends_on=["user"],
            ),
            APIEndpoint(
                name="flaky",
                url=base + "/flaky/sample",
                params={"fail": 2, "status": 503},
                retry_count=3,
                retry_delay=0.05,
            ),
        ],
        mode=OrchestrationMode.HYBRID,
        max_concurrent=4,
        total_timeout=10.0,
        rate_limit_window=1.0,
    )


def render_report(run: Run) -> str:
    """The run as a text table with a waterfall column (one bar per attempt)."""
    rows = run.attempt_rows()
    span = (
        max(
            (
                r["started_ms"]
                + r["queued_ms"]
                + r["wait_ms"]
                + (r["latency_ms"] or 0.0)
                + r["backoff_ms"]
                for r in rows
            ),
            default=1.0,
        )
        or 1.0
    )
    scale = _BAR_WIDTH / span
    last_try = {r["endpoint"]: r["attempt"] for r in rows}
    lines = [f"{'endpoint':<10} {'try':>3} {'status':>6} {'outcome':<9} {'ms':>7}  timeline"]
    for r in rows:
        outcome = r["outcome"] if r["attempt"] == last_try[r["endpoint"]] else "retried"
        latency = r["latency_ms"] or 0.0
        start = int(r["started_ms"] * scale)
        waiting = int((r["queued_ms"] + r["wait_ms"]) * scale)
        bar = "·" * waiting + "█" * max(1, int(latency * scale))
        if r["backoff_ms"]:
            bar += "~" * int(r["backoff_ms"] * scale)
        lines.append(
            f"{r['endpoint']:<10} {r['attempt']:>3} {r['status'] or '-':>6} "
            f"{outcome:<9} {latency:>7.1f}  {' ' * start}{bar}"
        )
    lines.append(f"{'':<39}0 ms{'':>{_BAR_WIDTH - 8}}{span:.0f} ms")
    lines.append("legend: █ in flight  · queued / rate limit  ~ backing off before a retry")
    return "\n".join(lines)


async def main(port: int) -> None:
    async with DemoServer(port=port) as server:
        print(f"demo API listening on {server.url}\n")
        async with APIOrchestrator(build_config(server.url)) as orchestrator:
            result = await orchestrator.execute({"user_id": 7})
            run = orchestrator.last_run
            assert run is not None
            print("result:")
            print(json.dumps(result, indent=2)[:1500])
            print("\n" + run.summary() + "\n")
            print(render_report(run))
            metrics = orchestrator.get_metrics()
            print(
                f"\nmetrics: {metrics.total_requests} requests, "
                f"success rate {metrics.success_rate:.0f}%, "
                f"avg latency {metrics.avg_latency:.1f} ms, retries {metrics.retries}"
            )
        print(f"\nthe server saw {server.count()} requests")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    asyncio.run(main(parser.parse_args().port))


if __name__ == "__main__":
    cli()

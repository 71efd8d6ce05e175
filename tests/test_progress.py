"""The live-progress hook: observers see the run as it happens and can never break it."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, RunObserver
from apiorch_nb._call import CallRecord
from apiorch_nb.demo import DemoServer
from apiorch_nb.run import Run


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def run_started(self, run: Run) -> None:
        self.events.append(("start", [r.state.value for r in run.records.values()]))

    def call_finished(self, run: Run, record: CallRecord) -> None:
        assert not run.finished
        self.events.append(("call", (record.endpoint, record.state.value, len(run.calls))))

    def run_finished(self, run: Run) -> None:
        self.events.append(("end", (run.finished, run.summary().split(" in ")[0])))


def _config(demo: DemoServer) -> APIOrchestrationConfig:
    return APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="fast", url=f"{demo.url}/delay/1"),
            APIEndpoint(name="slow", url=f"{demo.url}/delay/80"),
            APIEndpoint(name="never", url=f"{demo.url}/delay/1", condition=lambda c: False),
        ],
        mode="parallel",
    )


async def test_observer_sees_start_each_call_as_it_finishes_and_the_end(demo: DemoServer) -> None:
    recorder = Recorder()
    assert isinstance(recorder, RunObserver)
    async with APIOrchestrator(_config(demo)) as orch:
        await orch.execute(observer=recorder)
    kinds = [k for k, _ in recorder.events]
    assert kinds == ["start", "call", "call", "call", "end"]
    assert recorder.events[0][1] == ["pending", "pending", "pending"]
    calls = [v for k, v in recorder.events if k == "call"]
    assert {name for name, _, _ in calls} == {"fast", "slow", "never"}
    assert calls[-1][:2] == ("slow", "ok")  # finished last, told last
    assert recorder.events[-1][1] == (True, "3 calls (2 ok, 1 skipped)")
    assert orch.last_run is not None and orch.last_run.finished


async def test_a_failing_observer_is_detached_and_the_run_is_unaffected(
    demo: DemoServer, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Recorder):
        def call_finished(self, run: Run, record: CallRecord) -> None:
            raise RuntimeError("display broke")

    broken = Broken()
    async with APIOrchestrator(_config(demo)) as orch:
        with caplog.at_level(logging.ERROR, logger="apiorch_nb"):
            result = await orch.execute(observer=broken)
    assert set(result) == {"fast", "slow"}
    assert [k for k, _ in broken.events] == ["start"]  # detached after the first failure
    assert "display broke" in caplog.text and "detached" in caplog.text


async def test_default_observer_is_used_unless_turned_off(demo: DemoServer) -> None:
    made: list[Recorder] = []

    def factory() -> Recorder:
        made.append(Recorder())
        return made[-1]

    previous = APIOrchestrator.default_observer
    APIOrchestrator.default_observer = factory
    try:
        async with APIOrchestrator(_config(demo)) as orch:
            await orch.execute()
            await orch.execute(observer=None)
    finally:
        APIOrchestrator.default_observer = previous
    assert len(made) == 1 and made[0].events[-1][0] == "end"


async def test_a_map_never_gets_the_run_observer_default(
    demo: DemoServer, caplog: pytest.LogCaptureFixture
) -> None:
    made: list[Recorder] = []
    previous = APIOrchestrator.default_observer, APIOrchestrator.default_map_observer
    APIOrchestrator.default_observer = lambda: made.append(Recorder()) or made[-1]
    APIOrchestrator.default_map_observer = None
    try:
        async with APIOrchestrator(_config(demo)) as orch:
            await orch.map([{"n": 1}])
    finally:
        APIOrchestrator.default_observer, APIOrchestrator.default_map_observer = previous
    assert made == [] and "detached" not in caplog.text


async def test_cancelled_calls_are_reported_when_the_run_stops(demo: DemoServer) -> None:
    recorder = Recorder()
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="bad", url=f"{demo.url}/status/500", retry_count=0),
            APIEndpoint(name="slow", url=f"{demo.url}/delay/2000"),
        ],
        mode="parallel",
        fail_fast=True,
    )
    async with APIOrchestrator(config) as orch:
        with pytest.raises(Exception, match="fail_fast"):
            await orch.execute(observer=recorder)
    calls = [v[:2] for k, v in recorder.events if k == "call"]
    assert ("bad", "failed") in calls and ("slow", "cancelled") in calls
    assert recorder.events[-1][0] == "end"

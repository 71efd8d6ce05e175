"""The one scheduler behind every mode: runs a `Plan`'s graph to completion or abort.

An endpoint's task starts the moment its last dependency finishes; ``max_concurrent`` is
a semaphore the calls take around each attempt. The scheduler itself never polls: task
completion callbacks release dependants, and a single loop timer enforces
``total_timeout``. Whatever stops the run (fail_fast, error_threshold, total_timeout, a
configuration error, or the caller being cancelled), every task is cancelled and awaited,
so each call ends in a recorded terminal state before control returns.
"""

from __future__ import annotations

import asyncio
import functools
import time
from array import array
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ._call import CACHED, CANCELLED, CIRCUIT_OPEN, FAILED, OK, PENDING, SKIPPED, CallRecord
from ._call_runner import Services, run_call
from ._plan import Node, Plan
from .errors import (
    CallTimeout,
    ConfigError,
    ErrorThresholdExceeded,
    FailFastError,
    HTTPStatusError,
    OrchestrationTimeout,
    ResponseParseError,
    RunAborted,
    TransportError,
)
from .metrics import IOMetrics


@dataclass(frozen=True, slots=True)
class RunLimits:
    max_concurrent: int
    total_timeout: float | None = None
    fail_fast: bool = False
    error_threshold: float | None = None


class Scheduler:
    """Executes one run of a plan. Create one per ``execute``; services are shared."""

    def __init__(
        self,
        plan: Plan,
        services: Services,
        limits: RunLimits,
        *,
        run_input: Any,
        metrics: IOMetrics | None,
        slots: asyncio.Semaphore | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.plan = plan
        self.svc = services
        self.limits = limits
        self.run_input = run_input
        self.metrics = metrics
        now = time.monotonic()
        pending = PENDING
        self.records: dict[str, CallRecord] = {  # built inline: thousands per run
            n.name: CallRecord(
                n.name,
                n.endpoint.method,
                n.display_url,
                [],
                None,
                None,
                False,
                None,
                [pending],
                array("d", (now,)),
            )
            for n in plan.config_order
        }
        self.results: dict[str, Any] = {}
        self._nodes = plan.by_name
        # Made on first use: a map makes one scheduler per row, and most rows are one call
        # with no dependants, no task, no failure and no pipeline.
        self._outputs: dict[str, Any] | None = None  # PIPELINE outputs
        self._blocked: set[str] | None = None  # failed, or skipped: a data dependency failed
        self._failed: list[str] | None = None
        self._waiting: dict[str, int] | None = None  # dependencies left, per endpoint
        self._tasks: set[asyncio.Task[Any]] | None = None
        self._done: asyncio.Future[None] | None = None  # awaited while tasks run
        self._unfinished = len(plan.nodes)
        self._stopping = False
        self._abort: Exception | None = None
        # `map` passes one semaphore to every row's scheduler: the cap is on all its calls.
        self._slots = slots if slots is not None else asyncio.Semaphore(limits.max_concurrent)
        self._deadline: float | None = None
        # The running loop, passed in by `map` (once for all rows): on Python 3.11 each
        # get_running_loop() / current_task() without a loop is a getpid() system call.
        self._loop = loop
        self._inline: asyncio.Task[Any] | None = None  # the task running the lone root
        self._inline_cancelled = False
        #: Told about every call that reaches its outcome (the live-progress hook).
        self.on_call_finished: Callable[[CallRecord], None] | None = None

    async def run(self) -> Exception | None:
        """Run to the end; return the error that aborted the run (not raised), if any.

        Raises:
            asyncio.CancelledError: the caller was cancelled; every call is recorded first.
        """
        loop = self._loop = self._loop or asyncio.get_running_loop()
        if not self.plan.nodes:
            return None
        timer = None
        if self.limits.total_timeout is not None:
            self._deadline = loop.time() + self.limits.total_timeout
            timer = loop.call_at(self._deadline, self._on_deadline)
        ready = list(self.plan.roots)
        # A lone root (one endpoint, a chain, a map row) runs in this task: every other
        # call waits for it, so nothing can need cancelling it but the deadline, and a task
        # per call costs about a tenth of a fast call's CPU time.
        first = ready.pop() if len(ready) == 1 else None
        for node in ready:
            self._launch(node)
        try:
            if first is not None:
                # Awaited here rather than in a helper coroutine: one frame fewer for every
                # resume of the call, which matters at thousands of rows per second.
                record = self.records[first.name]
                if timer is not None:  # only the deadline ever cancels the lone root
                    self._inline = asyncio.current_task(loop)
                try:
                    await self._call(first, record, self.run_input)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug in the engine, as in _on_done
                    self._engine_failed(record, exc)
                else:
                    if not self._stopping:
                        self._release_children(first)
                finally:
                    self._inline = None
            if self._unfinished and self._abort is None:  # tasks still run: wait for them
                self._done = loop.create_future()
                await self._done
        except asyncio.CancelledError:
            if not self._cancelled_by_us():
                await self._stop()
                raise
        finally:
            if timer is not None:
                timer.cancel()
        if self._abort is not None:
            await self._stop()
        return self._abort

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop or asyncio.get_running_loop()

    def _call(self, node: Node, record: CallRecord, input: Any) -> Coroutine[Any, Any, None]:
        """`node`'s call, to await inline or to run as a task."""
        return run_call(
            node,
            record,
            self.svc,
            input=input,
            results=self.results,
            run_input=self.run_input,
            slots=self._slots,
            deadline=self._deadline,
            finish=self._finish,
        )

    def _engine_failed(self, record: CallRecord, exc: Exception) -> None:
        """The call raised: a bug in the engine, not an API failure. Stop and surface it."""
        record.error = exc
        if not record.state.terminal:
            record.to(FAILED)
        self._stop_with(exc)

    def _cancelled_by_us(self) -> bool:
        """True if the CancelledError just caught came from `_stop_with` stopping the inline
        call (the deadline passed), and from nobody else: then the run ends as aborted."""
        if not self._inline_cancelled:
            return False
        self._inline_cancelled = False
        task = asyncio.current_task(self._loop)
        if task is not None and hasattr(task, "uncancel"):  # Python 3.11+
            task.uncancel()
            return task.cancelling() == 0
        return True

    def ordered_results(self) -> dict[str, Any]:
        """Finished endpoints' results in the config's endpoint order."""
        return {name: self.results[name] for name in self.records if name in self.results}

    # -- graph bookkeeping -------------------------------------------------------------------

    def _launch(self, node: Node) -> None:
        record = self.records[node.name]
        if node.needs and self._blocked:
            failed_dep = next((d for d in node.needs if d in self._blocked), None)
            if failed_dep is not None:
                record.reason = f"dependency {failed_dep!r} failed"
                record.to(SKIPPED)
                self._finish(node, record, None)
                # on the next loop turn, so a long chain of skips does not recurse
                self._running_loop().call_soon(self._release_children, node)
                return
        task = self._running_loop().create_task(
            self._call(node, record, self._pipeline_input(node))
        )
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._on_done, node))

    def _pipeline_input(self, node: Node) -> Any:
        """A PIPELINE step's input is the step before's output; any other call's, the run's."""
        if node.input_from is None:
            return self.run_input
        assert self._outputs is not None  # the step before has finished
        return self._outputs[node.input_from]

    def _finish(self, node: Node, record: CallRecord, output: Any) -> None:
        """A call reached its outcome: count it, file its result, decide about stopping."""
        if node.feeds_pipeline:
            if self._outputs is None:
                self._outputs = {}
            self._outputs[node.name] = output
        if self.on_call_finished is not None:
            self.on_call_finished(record)
        attempts = record.attempts
        if (
            record._states[-1] is OK and len(attempts) == 1 and attempts[0].limited_at is None
        ):  # the common case, kept flat: one clean attempt, nothing to decide
            self.results[node.name] = record.result
            if self.metrics is not None:
                a = attempts[0]
                latency_s = (a.ended_at or 0.0) - (a.sent_at or 0.0)
                self.metrics.record_request(node.name, latency_s * 1000)
            return
        self._account(record)
        self._settle(node, record)

    def _on_done(self, node: Node, task: asyncio.Task[Any]) -> None:
        assert self._tasks is not None
        self._tasks.discard(task)
        if self._stopping or task.cancelled():
            return
        record = self.records[node.name]
        exc = task.exception()
        if isinstance(exc, Exception):  # KeyboardInterrupt and SystemExit leave the loop
            self._engine_failed(record, exc)
            return
        self._release_children(node)

    def _release_children(self, node: Node) -> None:
        """`node` is done: start whatever was waiting only for it; end the run if all are."""
        if self._abort is not None or self._stopping:
            return
        self._unfinished -= 1
        children = self.plan.children[node.name]
        if children:
            waiting = self._waiting
            if waiting is None:
                waiting = self._waiting = dict(self.plan.wait_counts)
            for child in children:
                waiting[child] -= 1
                if waiting[child] == 0:
                    self._launch(self._nodes[child])
        if self._unfinished == 0 and self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _settle(self, node: Node, record: CallRecord) -> None:
        """File the call's result and decide whether its failure stops the run."""
        state = record._states[-1]
        if state is SKIPPED:
            if record.reason and record.reason.startswith("dependency"):
                self._block(node.name)
            return
        self.results[node.name] = record.result
        if state not in (FAILED, CIRCUIT_OPEN) or record.rescued:
            return
        self._block(node.name)
        if self._failed is None:
            self._failed = []
        self._failed.append(node.name)
        assert record.error is not None
        if isinstance(record.error, ConfigError):
            self._stop_with(record.error)
        elif self.limits.fail_fast:
            self._stop_with(FailFastError(node.name, record.error, results=self.ordered_results()))
        elif (
            self.limits.error_threshold is not None
            and len(self._failed) / len(self.plan) > self.limits.error_threshold
        ):
            self._stop_with(
                ErrorThresholdExceeded(
                    list(self._failed),
                    len(self.plan),
                    self.limits.error_threshold,
                    results=self.ordered_results(),
                )
            )

    def _block(self, name: str) -> None:
        """`name`'s dependants that need its data are to be skipped."""
        if self._blocked is None:
            self._blocked = set()
        self._blocked.add(name)

    def _account(self, record: CallRecord) -> None:
        m = self.metrics
        if m is None:
            return
        name = record.endpoint
        wait_s = 0.0
        for a in record.attempts:
            if a.limited_at is not None:
                wait_s += a.rate_wait_s
        if wait_s:
            m.record_rate_limit_wait(name, wait_s * 1000)
        retries = len(record.attempts) - 1 if record.attempts else 0
        state = record._states[-1]
        if state is OK:
            latency = record.attempts[-1].latency_s if record.attempts else None
            m.record_request(name, (latency or 0.0) * 1000, retries=retries)
        elif state is CACHED:
            m.record_cache_hit(name)
        elif state is SKIPPED:
            m.record_skip(name)
        elif state is CIRCUIT_OPEN:
            m.record_error(name, "circuit_open")
        elif state is FAILED:
            m.record_error(name, error_type(record.error), retries=retries)

    # -- stopping ----------------------------------------------------------------------------

    def _on_deadline(self) -> None:
        pending = [r.endpoint for r in self.records.values() if not r.state.terminal]
        assert self.limits.total_timeout is not None
        self._stop_with(
            OrchestrationTimeout(self.limits.total_timeout, pending, results=self.ordered_results())
        )

    def _stop_with(self, error: Exception) -> None:
        if self._abort is None:
            self._abort = error
        current = asyncio.current_task(self._running_loop())
        for task in self._tasks or ():  # now: a call woken meanwhile must not send first
            if task is not current:
                task.cancel()
        if self._inline is not None and self._inline is not current:
            self._inline_cancelled = True
            self._inline.cancel()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def _stop(self) -> None:
        """Cancel every running call, wait for each to record itself, mark the rest."""
        self._stopping = True
        tasks = list(self._tasks or ())
        for task in tasks:
            task.cancel()
        try:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:  # even if cancelled again while waiting, no call is left without an outcome
            for record in self.records.values():
                if not record.state.terminal:
                    record.to(CANCELLED)
                if record.state is CANCELLED:
                    if self.metrics is not None:
                        self.metrics.record_cancelled(record.endpoint)
                    if self.on_call_finished is not None:
                        self.on_call_finished(record)
        if isinstance(self._abort, RunAborted):  # results as of now, not as of the failure
            self._abort.results = self.ordered_results()


def error_type(exc: BaseException | None) -> str:
    """A short class of failure for metrics: timeout, transport, http_503, parse, ..."""
    if isinstance(exc, CallTimeout):
        return "timeout"
    if isinstance(exc, TransportError):
        return "transport"
    if isinstance(exc, HTTPStatusError):
        return f"http_{exc.status}"
    if isinstance(exc, ResponseParseError):
        return "parse"
    if isinstance(exc, ConfigError):
        return "config"
    return "error"

"""Retries: the pure `RetryPolicy` decisions, then what the demo server sees the engine do.

Decision tests build an `AttemptOutcome` and assert the `RetryDecision`; nothing sleeps.
Engine tests count the server's arrivals and measure the gaps between them.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest

from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    CallState,
    CallTimeout,
    HTTPStatusError,
    OrchestrationMode,
)
from apiorch_nb.demo import DemoServer
from apiorch_nb.retry import MAX_RETRY_AFTER_S, AttemptOutcome, RetryPolicy, parse_retry_after

NO_JITTER = RetryPolicy(retry_count=3, retry_delay=0.5, jitter=lambda d: 0.0)


def failed(attempt: int, status: int | None = 503, **kwargs: Any) -> AttemptOutcome:
    """The outcome of failed attempt number `attempt` (a transport error if status is None)."""
    return AttemptOutcome(attempt=attempt, status=status, transport_error=status is None, **kwargs)


def orchestrator(*endpoints: APIEndpoint, **config: Any) -> APIOrchestrator:
    config.setdefault("mode", OrchestrationMode.PARALLEL)
    return APIOrchestrator(APIOrchestrationConfig(endpoints=list(endpoints), **config))


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


# -- decisions ------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_each_of_retry_count_retries_is_granted(attempt: int) -> None:
    assert NO_JITTER.decide(failed(attempt)).retry


def test_no_retry_after_the_last_allowed_attempt() -> None:
    decision = NO_JITTER.decide(failed(4))
    assert not decision.retry
    assert "no retries left" in decision.reason


def test_retry_count_zero_never_retries() -> None:
    assert not RetryPolicy(retry_count=0).decide(failed(1)).retry


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_default_retry_on_statuses_are_retried(status: int) -> None:
    assert RetryPolicy().decide(failed(1, status)).retry


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_other_4xx_fail_at_once(status: int) -> None:
    decision = RetryPolicy(retry_count=5).decide(failed(1, status))
    assert not decision.retry
    assert f"HTTP {status}" in decision.reason


def test_statuses_outside_a_custom_retry_on_are_not_retried() -> None:
    policy = RetryPolicy(retry_on=frozenset({418}), jitter=lambda d: 0.0)
    assert policy.decide(failed(1, 418)).retry
    assert not policy.decide(failed(1, 503)).retry


def test_transport_errors_and_timeouts_are_retried_whatever_retry_on_says() -> None:
    policy = RetryPolicy(retry_on=frozenset(), jitter=lambda d: 0.0)
    assert policy.decide(failed(1, None)).retry


def test_backoff_doubles_per_retry_without_jitter() -> None:
    delays = [NO_JITTER.decide(failed(n)).delay for n in (1, 2, 3)]
    assert delays == [0.5, 1.0, 2.0]


def test_jitter_adds_at_most_ten_percent() -> None:
    policy = RetryPolicy(retry_count=3, retry_delay=0.5)
    for attempt, base in ((1, 0.5), (2, 1.0), (3, 2.0)):
        for _ in range(200):
            delay = policy.decide(failed(attempt)).delay
            assert base <= delay <= base * 1.1


def test_jitter_function_receives_the_base_delay() -> None:
    seen: list[float] = []
    policy = RetryPolicy(retry_delay=0.25, jitter=lambda d: seen.append(d) or 0.01)
    assert policy.decide(failed(3)).delay == pytest.approx(1.01)
    assert seen == [1.0]


def test_retry_after_seconds_wins_over_backoff() -> None:
    decision = NO_JITTER.decide(failed(1, 429, retry_after="7"))
    assert decision.retry
    assert decision.delay == 7.0


def test_retry_after_shorter_than_backoff_still_wins() -> None:
    assert NO_JITTER.decide(failed(3, 503, retry_after="0")).delay == 0.0


def test_retry_after_is_capped() -> None:
    assert NO_JITTER.decide(failed(1, 429, retry_after="3600")).delay == MAX_RETRY_AFTER_S
    capped = RetryPolicy(max_retry_after=2.0, jitter=lambda d: 0.0)
    assert capped.decide(failed(1, 429, retry_after="30")).delay == 2.0


def test_retry_after_http_date_is_honoured() -> None:
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=20), usegmt=True)
    delay = NO_JITTER.decide(failed(1, 503, retry_after=when)).delay
    assert 18.0 <= delay <= 20.0


def test_unparseable_retry_after_falls_back_to_backoff() -> None:
    assert NO_JITTER.decide(failed(2, 503, retry_after="soon")).delay == 1.0


def test_retry_after_does_not_make_a_4xx_retryable() -> None:
    assert not NO_JITTER.decide(failed(1, 403, retry_after="1")).retry


def test_retry_is_not_made_when_its_sleep_would_pass_the_deadline() -> None:
    decision = NO_JITTER.decide(failed(2, now=100.0, deadline=100.9))
    assert not decision.retry
    assert decision.delay == 1.0
    assert "total_timeout" in decision.reason


def test_retry_is_made_when_its_sleep_ends_before_the_deadline() -> None:
    assert NO_JITTER.decide(failed(2, now=100.0, deadline=101.1)).retry


def test_capped_retry_after_is_what_the_deadline_is_checked_against() -> None:
    outcome = failed(1, 429, retry_after="3600", now=0.0, deadline=61.0)
    assert NO_JITTER.decide(outcome).retry


class TestParseRetryAfter:
    NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)

    @pytest.mark.parametrize("value", [None, "", "soon", "Tomorrow at noon"])
    def test_absent_or_unparseable_is_none(self, value: str | None) -> None:
        assert parse_retry_after(value, now_wall=self.NOW) is None

    @pytest.mark.parametrize(("value", "seconds"), [("0", 0.0), ("5", 5.0), (" 12 ", 12.0)])
    def test_delta_seconds(self, value: str, seconds: float) -> None:
        assert parse_retry_after(value, now_wall=self.NOW) == seconds

    def test_negative_seconds_mean_now(self) -> None:
        assert parse_retry_after("-3", now_wall=self.NOW) == 0.0

    def test_http_date_is_seconds_from_now(self) -> None:
        assert parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", now_wall=self.NOW) == 30.0

    def test_http_date_in_the_past_means_now(self) -> None:
        assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now_wall=self.NOW) == 0.0


# -- the engine, as the server sees it ------------------------------------------------------


async def test_a_failing_endpoint_is_sent_once_plus_retry_count(demo: DemoServer) -> None:
    ep = APIEndpoint("down", f"{demo.url}/status/503", retry_count=3, retry_delay=0.01)
    async with orchestrator(ep) as o:
        result = await o.execute()
    assert demo.count("/status/503") == 4
    assert result["down"]["status"] == 503
    record = o.last_run.records["down"]
    assert record.state is CallState.FAILED
    assert isinstance(record.error, HTTPStatusError)
    assert record.error.attempts == 4
    assert [a.status for a in record.attempts] == [503] * 4


async def test_an_endpoint_that_recovers_is_sent_until_it_succeeds(demo: DemoServer) -> None:
    ep = APIEndpoint("flaky", f"{demo.url}/flaky/k?fail=2", retry_count=5, retry_delay=0.01)
    async with orchestrator(ep) as o:
        result = await o.execute()
    assert demo.count("/flaky/k") == 3
    assert result == {"flaky": {"key": "k", "attempt": 3}}
    assert o.last_run.records["flaky"].state is CallState.OK
    assert o.get_metrics().retries == 2


async def test_backoff_gaps_at_the_server_double(demo: DemoServer) -> None:
    ep = APIEndpoint("down", f"{demo.url}/status/503", retry_count=3, retry_delay=0.05)
    async with orchestrator(ep) as o:
        await o.execute()
    arrivals = [r.t for r in demo.requests("/status/503")]
    assert len(arrivals) == 4
    g = gaps(arrivals)
    for n, gap in enumerate(g):
        base = 0.05 * 2**n
        assert base <= gap <= base * 1.1 + 0.1
    assert 1.4 <= g[1] / g[0] <= 3.0
    assert 1.4 <= g[2] / g[1] <= 3.0
    rows = o.last_run.attempt_rows()
    assert [r["attempt"] for r in rows] == [1, 2, 3, 4]
    for n, row in enumerate(rows[:3]):
        assert 50 * 2**n <= row["backoff_ms"] <= 55 * 2**n + 100
    assert rows[3]["backoff_ms"] == 0.0


async def test_server_retry_after_is_honoured(demo: DemoServer) -> None:
    ep = APIEndpoint(
        "busy", f"{demo.url}/flaky/ra?fail=1&status=429&retry_after=0.3", retry_delay=0.01
    )
    async with orchestrator(ep) as o:
        result = await o.execute()
    arrivals = [r.t for r in demo.requests("/flaky/ra")]
    assert len(arrivals) == 2
    assert 0.3 <= arrivals[1] - arrivals[0] <= 0.8
    assert result["busy"]["attempt"] == 2


async def test_a_huge_retry_after_is_capped_rather_than_given_up_on(demo: DemoServer) -> None:
    """Retry-After: 3600 is capped to 60 s, which fits a 90 s total_timeout, so the call
    backs off instead of failing at once (uncapped, 3600 s would pass the deadline)."""
    ep = APIEndpoint("busy", f"{demo.url}/status/429?retry_after=3600", retry_delay=0.01)
    async with orchestrator(ep, total_timeout=90) as o:
        task = asyncio.create_task(o.execute())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert demo.count("/status/429") == 1
    states = [state for state, _ in o.last_run.records["busy"].events]
    assert states[-2:] == [CallState.BACKING_OFF, CallState.CANCELLED]


async def test_a_404_is_sent_exactly_once(demo: DemoServer) -> None:
    ep = APIEndpoint("missing", f"{demo.url}/status/404", retry_count=3, retry_delay=0.01)
    async with orchestrator(ep) as o:
        result = await o.execute()
    assert demo.count("/status/404") == 1
    assert result["missing"]["status"] == 404
    assert o.last_run.records["missing"].error.attempts == 1


async def test_status_not_in_a_custom_retry_on_is_sent_once(demo: DemoServer) -> None:
    ep = APIEndpoint(
        "teapot", f"{demo.url}/status/503", retry_count=3, retry_delay=0.01, retry_on=[418]
    )
    async with orchestrator(ep) as o:
        await o.execute()
    assert demo.count("/status/503") == 1


async def test_timeouts_are_retried(demo: DemoServer) -> None:
    ep = APIEndpoint("slow", f"{demo.url}/hang", timeout=0.1, retry_count=2, retry_delay=0.01)
    async with orchestrator(ep) as o:
        result = await o.execute()
    assert demo.count("/hang") == 3
    record = o.last_run.records["slow"]
    assert isinstance(record.error, CallTimeout)
    assert record.error.attempts == 3
    assert result["slow"]["status"] is None


async def test_a_retry_that_would_pass_total_timeout_is_not_made(demo: DemoServer) -> None:
    ep = APIEndpoint("down", f"{demo.url}/status/503", retry_count=3, retry_delay=0.5)
    async with orchestrator(ep, total_timeout=0.4) as o:
        started = time.monotonic()
        result = await o.execute()
        elapsed = time.monotonic() - started
    assert demo.count("/status/503") == 1
    assert result["down"]["status"] == 503
    assert elapsed < 0.3  # gave up at once instead of sleeping into the deadline


async def test_retries_stop_at_the_first_one_that_would_pass_total_timeout(
    demo: DemoServer,
) -> None:
    # delays 0.05, 0.1, 0.2, 0.4: the first three fit a 0.6 s budget, the fourth does not
    ep = APIEndpoint("down", f"{demo.url}/status/503", retry_count=6, retry_delay=0.05)
    async with orchestrator(ep, total_timeout=0.6) as o:
        await o.execute()
    assert demo.count("/status/503") == 4

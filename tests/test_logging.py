"""log_requests / log_responses go through the `apiorch_nb` logger with secrets redacted."""

from __future__ import annotations

import logging

import pytest

from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator
from apiorch_nb._redact import REDACTED, redact_data, redact_mapping, redact_url
from apiorch_nb.demo import DemoServer

SECRETS = ["Bearer s3cr3t-token-value", "sk_live_abcdef", "hunter2", "cookie-value-123"]


async def test_request_and_response_logs_hide_every_secret(
    demo: DemoServer, caplog: pytest.LogCaptureFixture
) -> None:
    ep = APIEndpoint(
        name="secret_call",
        url=f"{demo.url}/echo",
        headers={
            "Authorization": SECRETS[0],
            "X-API-Key": SECRETS[1],
            "Cookie": f"sid={SECRETS[3]}",
            "Accept": "application/json",
        },
        params={"password": SECRETS[2], "page": 2},
    )
    config = APIOrchestrationConfig(endpoints=[ep], log_requests=True, log_responses=True)
    with caplog.at_level(logging.INFO, logger="apiorch_nb"):
        async with APIOrchestrator(config) as orch:
            await orch.execute()
    text = caplog.text
    assert "secret_call" in text and "GET" in text and "200" in text
    assert "application/json" in text and "page" in text  # non-secrets stay readable
    for secret in SECRETS:
        assert secret not in text
    assert REDACTED in text
    # the server did receive the real values: redaction is for display only
    (seen,) = demo.requests(path="/echo")
    assert seen.headers["Authorization"] == SECRETS[0]


async def test_no_logging_unless_asked(demo: DemoServer, caplog: pytest.LogCaptureFixture) -> None:
    config = APIOrchestrationConfig(endpoints=[APIEndpoint(name="a", url=f"{demo.url}/echo")])
    with caplog.at_level(logging.DEBUG, logger="apiorch_nb"):
        async with APIOrchestrator(config) as orch:
            await orch.execute()
    assert caplog.records == []


def test_redaction_rules() -> None:
    assert redact_mapping({"Authorization": "x", "Set-Cookie": "y", "X-Request-Id": "z"}) == {
        "Authorization": REDACTED,
        "Set-Cookie": REDACTED,
        "X-Request-Id": "z",
    }
    assert redact_mapping({"access_token": 1, "client_secret": 2, "apikey": 3, "q": 4}) == {
        "access_token": REDACTED,
        "client_secret": REDACTED,
        "apikey": REDACTED,
        "q": 4,
    }
    url = redact_url("https://user:pw@api.test/x?token=abc&page=2")
    assert "pw" not in url and "abc" not in url and "page=2" in url
    assert redact_data({"user": {"password": "p", "name": "n"}, "items": [{"api_key": "k"}]}) == {
        "user": {"password": REDACTED, "name": "n"},
        "items": [{"api_key": REDACTED}],
    }


async def test_run_records_store_urls_redacted(demo: DemoServer) -> None:
    ep = APIEndpoint(name="q", url=f"{demo.url}/echo?api_key=sk_live_abcdef&x=1")
    async with APIOrchestrator(APIOrchestrationConfig(endpoints=[ep])) as orch:
        await orch.execute()
    assert orch.last_run is not None
    rows = orch.last_run.attempt_rows()
    assert "sk_live_abcdef" not in repr(rows) and "x=1" in rows[0]["url"]
    assert "sk_live_abcdef" not in repr(orch.last_run) + repr(ep)

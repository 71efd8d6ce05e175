"""Secrets passed by value (``{$secrets.NAME}``) reach the server and nothing else."""

from __future__ import annotations

import logging

import pytest

from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    FailFastError,
    TemplateError,
)
from apiorch_nb.demo import DemoServer

TOKEN = "tok-9f8e7d6c5b4a"  # a value no redaction rule could guess from a name


def _config(demo: DemoServer, **kwargs: object) -> APIOrchestrationConfig:
    endpoints = [
        # the secret sits in a header whose NAME is not secret-like, and in the URL path
        APIEndpoint(
            name="echo",
            url=demo.url + "/echo?t={$secrets.TOKEN}",
            headers={"X-Custom": "{$secrets.TOKEN}"},
            retry_count=0,
        ),
        # an error whose body echoes the secret back
        APIEndpoint(
            name="fails",
            url=demo.url + "/status/418",
            params={"note": "{$secrets.TOKEN}"},
            retry_count=0,
        ),
    ]
    return APIOrchestrationConfig(endpoints=endpoints, mode="parallel", **kwargs)  # type: ignore[arg-type]


async def test_secret_reaches_the_server_but_no_record_log_or_error(
    demo: DemoServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(demo, log_requests=True, log_responses=True, fail_fast=True)
    with caplog.at_level(logging.INFO, logger="apiorch_nb"):
        async with APIOrchestrator(config, secrets={"TOKEN": TOKEN}) as orch:
            with pytest.raises(FailFastError) as info:
                await orch.execute()
    # the server got the real value
    (sent,) = demo.requests(path="/status/418")
    assert sent.query["note"] == TOKEN
    run = orch.last_run
    assert run is not None
    # `execute`'s results are the API's own data (here /echo sends the request back), so
    # they keep what the server returned; every display, log, error and export must not
    bundle = run._repr_mimebundle_()
    shown = "\n".join(
        [
            caplog.text,
            str(info.value),
            repr(run),
            repr(run.attempt_rows()),
            str(run.records["fails"].error),
            repr(orch.config),
            bundle["text/plain"],
            bundle["text/html"],
            run.calls.to_string(),
            run.metrics.to_string(),
            run.dag().mermaid,
            repr(run.timeline().to_dict()),
            run.to_python(),
        ]
    )
    assert TOKEN not in shown
    assert "[REDACTED]" in caplog.text
    assert run.results["echo"]["query"]["t"] == TOKEN  # the data itself is untouched


async def test_secret_in_the_url_path_is_hidden_in_the_record(demo: DemoServer) -> None:
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="p", url=demo.url + "/delay/1?k={$secrets.TOKEN}")]
    )
    async with APIOrchestrator(config, secrets={"TOKEN": TOKEN}) as orch:
        await orch.execute()
    assert demo.requests(prefix="/delay")[0].query["k"] == TOKEN
    assert orch.last_run is not None
    assert TOKEN not in orch.last_run.records["p"].url


async def test_an_unknown_secret_is_a_template_error(demo: DemoServer) -> None:
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="p", url=demo.url + "/echo", headers={"X": "{$secrets.NOPE}"})]
    )
    async with APIOrchestrator(config, secrets={"TOKEN": TOKEN}) as orch:
        with pytest.raises(TemplateError, match=r"\$secrets\.NOPE"):
            await orch.execute()
    assert demo.count() == 0


async def test_input_and_results_cannot_shadow_secrets(demo: DemoServer) -> None:
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="p", url=demo.url + "/echo", params={"k": "{$secrets.T}"})]
    )
    async with APIOrchestrator(config, secrets={"T": "real"}) as orch:
        await orch.execute({"$secrets": {"T": "fake"}})
    assert demo.requests(path="/echo")[0].query["k"] == "real"


async def test_a_secret_holding_mermaid_syntax_is_scrubbed_from_the_dag(demo: DemoServer) -> None:
    secret = 'p"w#1&<x>`y'  # every character the mermaid labels escape
    name = f"login {secret}"  # a name that happens to hold the value
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name=name, url=demo.url + "/echo", params={"pw": "{$secrets.PW}"})]
    )
    async with APIOrchestrator(config, secrets={"PW": secret}) as orch:
        await orch.execute()
    assert demo.requests(path="/echo")[0].query["pw"] == secret
    assert orch.last_run is not None
    dag = orch.last_run.dag()
    escaped = "p#34;w#35;1#38;#60;x#62;#96;y"  # what an unscrubbed label would show
    assert secret not in dag.mermaid and escaped not in dag.mermaid
    assert '    n0["login [REDACTED]<br/>ok · 200 · ' in dag.mermaid
    assert secret not in dag.text and "login [REDACTED]" in dag.text


async def test_a_map_display_hides_echoed_secrets_but_its_frame_keeps_the_data(
    demo: DemoServer,
) -> None:
    from apiorch_nb.notebook.display import map_run_bundle

    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="echo", url=demo.url + "/echo?q={$secrets.K}&id={id}")]
    )
    async with APIOrchestrator(config, secrets={"K": "s3cr3t-value"}) as orchestrator:
        frame = await orchestrator.map([{"id": 1}, {"id": 2}])
    assert orchestrator.last_map is not None
    # The frame is the API's data, as execute's result is: the echoed query is there.
    assert frame["echo"][0]["query"]["q"] == "s3cr3t-value"
    # Every display shows it redacted, also the secret-named response headers.
    shown = orchestrator.last_map.shown_frame()
    assert "s3cr3t-value" not in repr(shown.to_dict())
    bundle = map_run_bundle(orchestrator.last_map)
    assert all("s3cr3t-value" not in text for text in bundle.values())
    assert [r.query["q"] for r in demo.log] == ["s3cr3t-value"] * 2

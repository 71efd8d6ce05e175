"""Transport failures: each aiohttp failure a call can meet becomes one of our errors.

`_http.py` is the only place that catches aiohttp's exceptions. These tests provoke each
failure over a real socket on 127.0.0.1 (the demo server, or a tiny inline server that
speaks broken HTTP) and check the error class, the chained aiohttp cause, the error
record in the results, and how many requests the server saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from _app_server import serving
from aiohttp import web

from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    CallError,
    CallState,
    CallTimeout,
    ConfigError,
    HTTPStatusError,
    OrchestrationMode,
    ResponseParseError,
    TransportError,
)
from apiorch_nb.demo import DemoServer

RawServer = Callable[[bytes], Awaitable[str]]


def orchestrator(*endpoints: APIEndpoint, **config: Any) -> APIOrchestrator:
    config.setdefault("mode", OrchestrationMode.PARALLEL)
    return APIOrchestrator(APIOrchestrationConfig(endpoints=list(endpoints), **config))


def endpoint(name: str, url: str, **kwargs: Any) -> APIEndpoint:
    kwargs.setdefault("retry_count", 0)
    kwargs.setdefault("retry_delay", 0.0)
    return APIEndpoint(name, url, **kwargs)


async def failure(ep: APIEndpoint) -> tuple[Any, BaseException]:
    """Run `ep` alone; return its result and the error its call record holds."""
    async with orchestrator(ep) as o:
        result = await o.execute()
    record = o.last_run.records[ep.name]
    assert record.state is CallState.FAILED
    assert record.error is not None
    return result[ep.name], record.error


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    """Start servers that answer every request with fixed bytes, then hang up."""
    servers: list[asyncio.Server] = []

    async def start(reply: bytes) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(reply)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


# -- transport failures ---------------------------------------------------------------------


async def test_connection_refused_is_a_transport_error() -> None:
    port = closed_port()
    result, error = await failure(endpoint("gone", f"http://127.0.0.1:{port}/x"))
    assert type(error) is TransportError
    assert isinstance(error.__cause__, aiohttp.ClientConnectorError)
    assert error.endpoint == "gone"
    assert f"127.0.0.1:{port}" in str(error)
    assert result == {"error": str(error), "status": None}


async def test_connection_refused_is_retried() -> None:
    ep = endpoint("gone", f"http://127.0.0.1:{closed_port()}/x", retry_count=2)
    async with orchestrator(ep) as o:
        await o.execute()
    record = o.last_run.records["gone"]
    assert len(record.attempts) == 3
    assert isinstance(record.error, TransportError)
    assert record.error.attempts == 3


async def test_connection_reset_is_a_transport_error(demo: DemoServer) -> None:
    result, error = await failure(endpoint("reset", f"{demo.url}/reset"))
    assert type(error) is TransportError
    assert isinstance(error.__cause__, aiohttp.ServerDisconnectedError)
    assert error.attempts == 1
    assert result == {"error": str(error), "status": None}
    # aiohttp would resend an idempotent request once after a dropped connection; the
    # engine turns that off, so one attempt is exactly one request at the server
    assert demo.count("/reset") == 1


async def test_a_reset_get_is_sent_exactly_once_per_attempt(demo: DemoServer) -> None:
    ep = endpoint("reset", f"{demo.url}/reset", retry_count=2, retry_delay=0.01)
    _, error = await failure(ep)
    assert error.attempts == 3
    assert demo.count("/reset") == 3


async def test_a_reset_post_is_sent_once_per_attempt(demo: DemoServer) -> None:
    ep = endpoint("reset", f"{demo.url}/reset", method="POST", body={"x": 1}, retry_count=1)
    _, error = await failure(ep)
    assert type(error) is TransportError
    assert error.attempts == 2
    assert demo.count("/reset") == 2


async def test_a_truncated_body_is_a_transport_error(raw_server: RawServer) -> None:
    url = await raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
    _, error = await failure(endpoint("short", url))
    assert type(error) is TransportError
    assert isinstance(error.__cause__, aiohttp.ClientPayloadError)
    assert "broken response body" in str(error)


async def test_a_garbage_status_line_is_a_transport_error(raw_server: RawServer) -> None:
    url = await raw_server(b"this is not http\r\n\r\n")
    result, error = await failure(endpoint("garbage", url))
    assert type(error) is TransportError
    assert isinstance(error.__cause__, aiohttp.ClientResponseError)
    assert result["status"] is None  # aiohttp's internal 400 is not the server's status


async def test_a_redirect_loop_is_a_transport_error() -> None:
    async def loop_back(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    app = web.Application()
    app.router.add_get("/loop", loop_back)
    async with serving(app) as base_url:
        _, error = await failure(endpoint("loop", f"{base_url}/loop"))
    assert type(error) is TransportError
    assert isinstance(error.__cause__, aiohttp.TooManyRedirects)


async def test_hang_past_the_endpoint_timeout_is_a_call_timeout(demo: DemoServer) -> None:
    result, error = await failure(endpoint("hang", f"{demo.url}/hang", timeout=0.1))
    assert type(error) is CallTimeout
    assert isinstance(error, TimeoutError)
    assert isinstance(error.__cause__, asyncio.TimeoutError)
    assert result == {"error": "endpoint 'hang': no complete response within 0.1s", "status": None}


# -- answers we cannot use ------------------------------------------------------------------


async def test_malformed_json_is_a_parse_error_and_not_retried(demo: DemoServer) -> None:
    ep = endpoint("bad", f"{demo.url}/malformed", retry_count=3)
    result, error = await failure(ep)
    assert type(error) is ResponseParseError
    assert error.endpoint == "bad"
    assert "not valid JSON" in str(error)
    assert result["status"] is None
    assert demo.count("/malformed") == 1


async def test_non_2xx_is_an_http_status_error_with_status_and_body(demo: DemoServer) -> None:
    result, error = await failure(endpoint("teapot", f"{demo.url}/status/418"))
    assert type(error) is HTTPStatusError
    assert error.status == 418
    assert error.body == '{"status": 418}'
    assert str(error) == "endpoint 'teapot': HTTP 418: {\"status\": 418}"
    assert result == {"error": str(error), "status": 418}


async def test_the_status_error_keeps_only_a_snippet_of_a_big_body(
    raw_server: RawServer,
) -> None:
    body = b"x" * 10_000
    head = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 10000\r\n\r\n"
    url = await raw_server(head + body)
    _, error = await failure(endpoint("big", url))
    assert isinstance(error, HTTPStatusError)
    assert error.status == 500
    assert error.body == "x" * 500
    assert str(error) == "endpoint 'big': HTTP 500: " + "x" * 120


async def test_a_status_without_a_body_has_no_snippet(demo: DemoServer) -> None:
    ep = endpoint("empty", f"{demo.url}/status/304", retry_count=0)
    _, error = await failure(ep)
    assert isinstance(error, HTTPStatusError)
    assert str(error) == "endpoint 'empty': HTTP 304"


async def test_response_parser_raising_is_a_parse_error_naming_the_endpoint(
    demo: DemoServer,
) -> None:
    ep = endpoint("users", f"{demo.url}/users/1", response_parser=lambda r: r.json()["missing"])
    result, error = await failure(ep)
    assert type(error) is ResponseParseError
    assert error.endpoint == "users"
    assert str(error) == "endpoint 'users': response_parser raised KeyError: 'missing'"
    assert isinstance(error.__cause__, KeyError)
    assert result == {"error": str(error), "status": None}
    assert demo.count("/users/1") == 1


async def test_response_parser_json_on_malformed_body_names_the_endpoint(
    demo: DemoServer,
) -> None:
    ep = endpoint("bad", f"{demo.url}/malformed", response_parser=lambda r: r.json())
    _, error = await failure(ep)
    assert type(error) is ResponseParseError
    assert str(error).startswith("endpoint 'bad': response body is not valid JSON")


async def test_transform_output_raising_is_a_call_error(demo: DemoServer) -> None:
    ep = endpoint("users", f"{demo.url}/users/1", transform_output=lambda v: v["missing"])
    _, error = await failure(ep)
    assert type(error) is CallError
    assert str(error) == "endpoint 'users': transform_output raised KeyError: 'missing'"


# -- requests we cannot send ----------------------------------------------------------------


async def test_a_url_that_is_not_http_after_templating_is_a_config_error(
    demo: DemoServer,
) -> None:
    ep = endpoint("api", "{base}/users/1")
    async with orchestrator(ep) as o:
        with pytest.raises(ConfigError, match="http") as info:
            await o.execute({"base": "ftp://127.0.0.1"})
    assert "'api'" in str(info.value)
    assert o.last_run.records["api"].state is CallState.FAILED
    assert o.last_run.results["api"] == {"error": str(info.value), "status": None}
    assert demo.count() == 0


async def test_an_unparseable_url_after_templating_is_a_config_error(demo: DemoServer) -> None:
    ep = endpoint("api", "http://{host}/users/1")
    async with orchestrator(ep) as o:
        with pytest.raises(ConfigError, match="'api'"):
            await o.execute({"host": "[::1"})


async def test_a_body_that_cannot_be_encoded_is_a_config_error(demo: DemoServer) -> None:
    ep = endpoint("post", f"{demo.url}/echo", method="POST", body={"when": object()})
    async with orchestrator(ep) as o:
        with pytest.raises(ConfigError, match="cannot build the request"):
            await o.execute()
    assert demo.count("/echo") == 0


async def test_config_errors_are_not_rescued_by_error_handler(demo: DemoServer) -> None:
    ep = endpoint("api", "{base}/x", error_handler=lambda e: "rescued")
    async with orchestrator(ep) as o:
        with pytest.raises(ConfigError):
            await o.execute({"base": "file:///etc"})
    assert not o.last_run.records["api"].rescued


# -- big answers ----------------------------------------------------------------------------


async def test_huge_bodies_are_read_fully(demo: DemoServer) -> None:
    size = 8 * 1024 * 1024 + 7
    ep = endpoint("bytes", f"{demo.url}/bytes/{size}", response_parser=lambda r: r.body)
    async with orchestrator(ep) as o:
        result = await o.execute()
    body = result["bytes"]
    assert len(body) == size
    assert body[:256] == bytes(range(256))
    assert body[-7:] == bytes(range(7))
    (row,) = o.last_run.attempt_rows()
    assert (row["status"], row["bytes"]) == (200, size)


async def test_a_large_json_document_is_parsed(demo: DemoServer) -> None:
    ep = endpoint("huge", f"{demo.url}/huge?mb=2", transform_output=lambda v: len(v["items"]))
    async with orchestrator(ep) as o:
        result = await o.execute()
    assert result["huge"] > 10_000
    assert o.last_run.attempt_rows()[0]["bytes"] >= 2 * 1024 * 1024

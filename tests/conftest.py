"""Shared fixtures: one demo API server for the whole session, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apiorch_nb.demo import DemoServer, LocalRedis


@pytest.fixture(scope="session")
def demo_server() -> Iterator[DemoServer]:
    """The demo API on 127.0.0.1, served from a background thread for the whole session."""
    with DemoServer() as server:
        yield server


@pytest.fixture
def demo(demo_server: DemoServer) -> Iterator[DemoServer]:
    """The session's demo server with its log, counters and knobs reset for this test."""
    demo_server.reset()
    yield demo_server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on 127.0.0.1 for the whole session; yields its URL.

    A missing redis-server is a failure, not a skip: CI installs it (``.ci/run``).
    """
    with LocalRedis(workdir=tmp_path_factory.mktemp("redis")) as redis:
        yield redis.url


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis, emptied (FLUSHALL) for this test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server

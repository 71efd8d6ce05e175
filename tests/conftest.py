"""Shared fixtures: one demo API server for the whole session, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apiorch_nb.demo import DemoServer


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

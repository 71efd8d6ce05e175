"""A real redis-server on 127.0.0.1 for the tests that share state through Redis.

A missing server is a failure, not a skip: CI installs it (``.ci/run``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from apiorch_nb.demo import LocalRedis


@contextmanager
def running_redis(workdir: Path) -> Iterator[str]:
    """Start redis-server on a free loopback port; yield its ``redis://`` URL."""
    with LocalRedis(workdir=workdir) as redis:
        yield redis.url

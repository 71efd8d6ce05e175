"""A real aiohttp demo API on 127.0.0.1 that records every request it sees.

Tests, tutorials and benchmarks all use this one server: deterministic example data
(users, posts, a payment pipeline), and fault knobs for latency, 5xx bursts, 429 with
Retry-After, hangs, resets and malformed JSON. The request log lets a test assert what
the server actually received, and when.
"""

from __future__ import annotations

from ._log import Headers, RequestLog, RequestRecord, max_in_window
from ._redis import LocalRedis
from ._server import DemoServer
from ._state import LimitViolation

__all__ = [
    "DemoServer",
    "Headers",
    "LimitViolation",
    "LocalRedis",
    "RequestLog",
    "RequestRecord",
    "max_in_window",
]

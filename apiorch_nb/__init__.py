"""apiorch_nb: explore and orchestrate HTTP APIs from Python and Jupyter.

The engine (this package's top level) never imports IPython, pandas, plotly or ipywidgets
at import time; the notebook layer loads them when first needed.
"""

from __future__ import annotations

from ._call import CallState
from .breaker import BreakerState, CircuitBreaker
from .config import APIOrchestrationConfig, OrchestrationMode
from .endpoint import APIEndpoint
from .errors import (
    CallError,
    CallTimeout,
    CellSyntaxError,
    CircuitOpenError,
    ConfigError,
    ErrorThresholdExceeded,
    FailFastError,
    HTTPStatusError,
    OrchestrationError,
    OrchestrationTimeout,
    RateLimitTimeout,
    ResponseParseError,
    RunAborted,
    TemplateError,
    TransportError,
)
from .metrics import IOMetrics, MetricsSnapshot
from .orchestrator import APIOrchestrator, create_parallel_aggregator, create_sequential_api_chain
from .run import Run

__version__ = "0.1.0"

__all__ = [
    "APIEndpoint",
    "APIOrchestrationConfig",
    "APIOrchestrator",
    "BreakerState",
    "CallError",
    "CallState",
    "CallTimeout",
    "CellSyntaxError",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConfigError",
    "ErrorThresholdExceeded",
    "FailFastError",
    "HTTPStatusError",
    "IOMetrics",
    "MetricsSnapshot",
    "OrchestrationError",
    "OrchestrationMode",
    "OrchestrationTimeout",
    "RateLimitTimeout",
    "ResponseParseError",
    "Run",
    "RunAborted",
    "TemplateError",
    "TransportError",
    "__version__",
    "create_parallel_aggregator",
    "create_sequential_api_chain",
]

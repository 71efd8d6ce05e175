"""apiorch_nb: explore and orchestrate HTTP APIs from Python and Jupyter.

The engine (this package's top level) never imports IPython, pandas, plotly or ipywidgets
at import time; the notebook layer loads them when first needed.
"""

from __future__ import annotations

import typing as _typing

from ._call import CallState
from .breaker import BreakerState, CircuitBreaker
from .config import APIOrchestrationConfig, OrchestrationMode
from .endpoint import APIEndpoint
from .enrich import MapRun, RowOutcome
from .errors import (
    CallError,
    CallTimeout,
    CellSyntaxError,
    CircuitOpenError,
    ConfigError,
    ErrorThresholdExceeded,
    FailFastError,
    HTTPStatusError,
    MapTimeout,
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
from .progress import MapObserver, RunObserver
from .run import Run

if _typing.TYPE_CHECKING:
    from typing import Any

    from .notebook.builder import Builder

__version__ = "0.1.0"


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext apiorch_nb``: the notebook layer is imported only now."""
    from .notebook import load_ipython_extension as load

    load(shell)


def unload_ipython_extension(shell: Any) -> None:
    """``%unload_ext apiorch_nb``: removes the magics, display hooks and completion."""
    from .notebook import unload_ipython_extension as unload

    unload(shell)


def builder(source: Any = None, **kwargs: Any) -> Builder:
    """A widget form that builds, runs and exports an orchestration (ipywidgets 8).

    `source` is nothing, a ``.http`` file path, ``%%orchestrate`` cell text, a `Run` or an
    `APIOrchestrationConfig`; keyword arguments go to `notebook.builder.Builder`. The
    notebook layer (ipywidgets) is imported only now.
    """
    from .notebook.builder import builder as make

    return make(source, **kwargs)


def enable_asyncio_run() -> None:
    """Make ``asyncio.run(...)`` work inside this notebook (nest-asyncio); see notebook.loop."""
    from .notebook.loop import enable_asyncio_run as enable

    enable()


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
    "MapObserver",
    "MapRun",
    "MapTimeout",
    "MetricsSnapshot",
    "OrchestrationError",
    "OrchestrationMode",
    "OrchestrationTimeout",
    "RateLimitTimeout",
    "ResponseParseError",
    "RowOutcome",
    "Run",
    "RunAborted",
    "RunObserver",
    "TemplateError",
    "TransportError",
    "__version__",
    "builder",
    "create_parallel_aggregator",
    "create_sequential_api_chain",
    "enable_asyncio_run",
    "load_ipython_extension",
    "unload_ipython_extension",
]

"""The public surface: every name the spec page uses, a complete __all__, a light import."""

from __future__ import annotations

import json
import subprocess
import sys

import apiorch_nb
import apiorch_nb.metrics
import apiorch_nb.ratelimit


def test_spec_names_import_from_their_documented_modules() -> None:
    from apiorch_nb import (  # noqa: F401
        APIEndpoint,
        APIOrchestrationConfig,
        APIOrchestrator,
        CircuitBreaker,
        OrchestrationMode,
        create_parallel_aggregator,
        create_sequential_api_chain,
    )
    from apiorch_nb.metrics import IOMetrics  # noqa: F401
    from apiorch_nb.ratelimit import InMemoryRateLimiter, RateLimit, RateLimiterConfig  # noqa: F401


def test_all_is_sorted_complete_and_resolvable() -> None:
    names = apiorch_nb.__all__
    assert list(names) == sorted(names)
    for name in names:
        assert hasattr(apiorch_nb, name), name
    public = {
        n
        for n, v in vars(apiorch_nb).items()
        if not n.startswith("_") and not isinstance(v, type(sys)) and n != "annotations"
    }
    assert public - set(names) == set(), "public names missing from __all__"


def test_every_error_is_exported_and_rooted_at_orchestration_error() -> None:
    from apiorch_nb import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, apiorch_nb.OrchestrationError)
        assert getattr(apiorch_nb, name) is cls


def test_timeouts_and_config_errors_are_also_builtin_errors() -> None:
    assert issubclass(apiorch_nb.CallTimeout, TimeoutError)
    assert issubclass(apiorch_nb.OrchestrationTimeout, TimeoutError)
    assert issubclass(apiorch_nb.ConfigError, ValueError)
    assert issubclass(apiorch_nb.TemplateError, KeyError)


def test_import_loads_no_notebook_or_dataframe_libraries() -> None:
    code = (
        "import sys, json, apiorch_nb;"
        "heavy = ['IPython', 'pandas', 'plotly', 'ipywidgets', 'redis', 'dask', 'numpy'];"
        "print(json.dumps([m for m in heavy if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_import_creates_no_thread_or_event_loop() -> None:
    code = (
        "import threading, asyncio, apiorch_nb;"
        "print(threading.active_count());"
        "import asyncio.events as e; print(e._get_running_loop() is None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "True"]

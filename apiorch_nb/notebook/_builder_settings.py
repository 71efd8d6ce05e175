"""The builder's run settings form: mode, concurrency, timeouts, rate limit, breaker, input."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as w

from ..config import OrchestrationMode
from ..errors import ConfigError
from . import _builder_fields as fields
from ._builder_cell import RunSettings
from ._builder_endpoint import mark, text_field
from ._builder_validate import config_errors
from ._options import parse_rate

Handler = Callable[[Any], None]
Guard = Callable[[Handler], Handler]

_text = functools.partial(text_field, width="14em")


class SettingsForm:
    """The run settings; `read` gives `APIOrchestrationConfig` keyword arguments."""

    def __init__(self, on_change: Callable[[], None], guard: Guard, run_name: str) -> None:
        defaults = RunSettings()
        self.mode = w.Dropdown(
            options=[m.value for m in OrchestrationMode],
            value=defaults.mode,
            description="Mode",
            layout=w.Layout(width="14em"),
        )
        self.max_concurrent = _text("Max concurrency", defaults.max_concurrent)
        self.total_timeout = _text("Total timeout s", "", "none")
        self.fail_fast = w.Checkbox(value=False, description="Fail fast", indent=False)
        self.rate_limit = _text("Rate limit", "", "e.g. 100/min")
        self.cache_ttl = _text("Cache TTL s", "", "off")
        self.breaker_threshold = _text("Breaker threshold", defaults.circuit_breaker_threshold)
        self.breaker_timeout = _text("Breaker timeout s", defaults.circuit_breaker_timeout)
        self.input_var = _text("Input variable", "", "none")
        self.run_name = _text("Store run as", run_name)
        self.run_name.add_class("apiorch-run-name")
        #: Config field (or "input_var" / "run_name") -> its widget, for marking errors.
        self.fields: dict[str, w.DOMWidget] = {
            "mode": self.mode,
            "max_concurrent": self.max_concurrent,
            "total_timeout": self.total_timeout,
            "fail_fast": self.fail_fast,
            "global_rate_limit": self.rate_limit,
            "cache_ttl": self.cache_ttl,
            "circuit_breaker_threshold": self.breaker_threshold,
            "circuit_breaker_timeout": self.breaker_timeout,
            "input_var": self.input_var,
            "run_name": self.run_name,
        }
        for widget in self.fields.values():
            widget.observe(guard(lambda _: on_change()), names="value")
        wrap = w.Layout(flex_flow="row wrap")
        self.box = w.VBox(
            [
                w.HTML("<b>Run settings</b>"),
                w.HBox(
                    [self.mode, self.max_concurrent, self.total_timeout, self.fail_fast],
                    layout=wrap,
                ),
                w.HBox(
                    [self.rate_limit, self.cache_ttl, self.breaker_threshold, self.breaker_timeout],
                    layout=wrap,
                ),
                w.HBox([self.input_var, self.run_name], layout=wrap),
            ]
        )
        self.box.add_class("apiorch-settings")

    def load(self, settings: RunSettings) -> None:
        self.mode.value = settings.mode
        self.max_concurrent.value = settings.max_concurrent
        self.total_timeout.value = settings.total_timeout
        self.fail_fast.value = settings.fail_fast
        self.rate_limit.value = settings.rate_limit
        self.cache_ttl.value = settings.cache_ttl
        self.breaker_threshold.value = settings.circuit_breaker_threshold
        self.breaker_timeout.value = settings.circuit_breaker_timeout
        self.input_var.value = settings.input_var
        if settings.store_as is not None:
            self.run_name.value = settings.store_as

    def read(self) -> tuple[dict[str, Any], dict[str, str]]:
        """Config keyword arguments and the settings' errors (the engine's messages)."""
        errors: dict[str, str] = {}
        kwargs: dict[str, Any] = {
            "mode": self.mode.value,
            "max_concurrent": fields.number(self.max_concurrent.value, integer=True, default=10),
            "total_timeout": fields.number(self.total_timeout.value),
            "fail_fast": self.fail_fast.value,
            "cache_ttl": fields.number(self.cache_ttl.value),
            "circuit_breaker_threshold": fields.number(
                self.breaker_threshold.value, integer=True, default=5
            ),
            "circuit_breaker_timeout": fields.number(self.breaker_timeout.value, default=60.0),
        }
        if self.rate_limit.value.strip():
            try:
                rate, window = parse_rate(self.rate_limit.value)
                kwargs.update(global_rate_limit=rate, rate_limit_window=window)
            except ConfigError as exc:
                errors["global_rate_limit"] = f"config: {exc}"
        errors.update(config_errors(kwargs))
        for name, label in (("input_var", "input variable"), ("run_name", "store run as")):
            text = self.fields[name].value.strip()
            if text and not text.isidentifier():
                errors[name] = f"{label}: {text!r} is not a Python name"
        return kwargs, errors

    def show_errors(self, errors: Mapping[str, str]) -> None:
        for field, widget in self.fields.items():
            mark(widget, field in errors)

"""Validation of the whole form, by the engine itself.

`APIEndpoint` and `APIOrchestrationConfig` refuse bad input in ``__post_init__`` with a
message naming the field and the value; the builder shows exactly those messages. To get
one message per field rather than only the first, each field is checked on its own
against an otherwise valid probe; the graph (a name used twice, a cycle) is checked on the
names alone, so it shows while other fields are still being fixed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import TYPE_CHECKING, Any

from .._plan import compile_plan
from ..config import APIOrchestrationConfig, _find_cycle, check_graph
from ..endpoint import APIEndpoint
from ..errors import ConfigError

if TYPE_CHECKING:
    from ._builder_endpoint import EndpointForm
    from ._builder_settings import SettingsForm

_PROBE_URL = "http://localhost"


@dataclass
class Checked:
    """What the form amounts to: a config if it is valid, else the problems, by field."""

    config: APIOrchestrationConfig | None
    problems: list[str]
    endpoint_errors: dict[int, dict[str, str]] = dc_field(default_factory=dict)  # by form uid
    settings_errors: dict[str, str] = dc_field(default_factory=dict)


def validate(
    forms: list[EndpointForm], settings: SettingsForm, namespace: Mapping[str, Any]
) -> Checked:
    """Read every form and the settings, and check them the way the engine will."""
    name_of = {form.uid: form.name.value for form in forms}
    errors: dict[int, dict[str, str]] = {}
    all_kwargs = []
    for i, form in enumerate(forms):
        kwargs, found = form.read(namespace)
        kwargs["depends_on"] = [name_of[uid] for uid in form.dependencies]
        unchecked = {k: v for k, v in kwargs.items() if k not in found}
        errors[form.uid] = {**endpoint_errors(unchecked, f"#{i + 1}"), **found}
        all_kwargs.append(kwargs)
    graph = _mark_graph(forms, all_kwargs, errors)
    config_kwargs, settings_errors = settings.read()
    problems = [m for e in errors.values() for m in e.values()] + list(settings_errors.values())
    config = None
    if not problems and graph is None:
        try:
            config = APIOrchestrationConfig(
                endpoints=[APIEndpoint(**kwargs) for kwargs in all_kwargs], **config_kwargs
            )
            graph = graph_problems(config)
        except ConfigError as exc:
            graph = str(exc)
    if graph is not None:
        problems.append(graph)
        config = None
    return Checked(config, list(dict.fromkeys(problems)), errors, settings_errors)


def _mark_graph(
    forms: list[EndpointForm], all_kwargs: list[dict[str, Any]], errors: dict[int, dict[str, str]]
) -> str | None:
    """Check the graph; put its message on the names used twice or the cycle's fields."""
    nodes = [
        (kw["name"], kw["depends_on"])
        for form, kw in zip(forms, all_kwargs, strict=True)
        if "name" not in errors[form.uid]
    ]
    message = graph_error(nodes)
    if message is None:
        return None
    twice = {name for name, n in Counter(name for name, _ in nodes).items() if n > 1}
    on_cycle = set(cycle(dict(nodes))) if not twice else set()
    for form in forms:
        if form.name.value in twice:
            errors[form.uid].setdefault("name", message)
        elif form.name.value in on_cycle:
            errors[form.uid].setdefault("depends_on", message)
    return message


def endpoint_errors(kwargs: dict[str, Any], label: str) -> dict[str, str]:
    """Each `APIEndpoint` field's error, checked one field at a time; {} if all are fine.

    `label` names the endpoint in messages when its own name is not valid.
    """
    errors: dict[str, str] = {}
    name = kwargs["name"]
    try:
        APIEndpoint(name=name, url=_PROBE_URL)
    except ConfigError as exc:
        errors["name"] = str(exc)
        name = label
    for field, value in kwargs.items():
        if field in ("name", "depends_on"):
            continue
        probe = {"name": name, "url": _PROBE_URL, field: value}
        try:
            APIEndpoint(**probe)
        except ConfigError as exc:
            errors[field] = str(exc)
    return errors


def config_errors(kwargs: dict[str, Any]) -> dict[str, str]:
    """Each run setting's error, checked one setting at a time."""
    errors: dict[str, str] = {}
    for field, value in kwargs.items():
        try:
            APIOrchestrationConfig(**{field: value})
        except ConfigError as exc:
            errors[field] = str(exc)
    return errors


def graph_error(nodes: list[tuple[str, list[str]]]) -> str | None:
    """The engine's graph check (a name used twice, a dependency cycle) on names alone, so
    it works while other fields of the same endpoints are still wrong."""
    known = {name for name, _ in nodes}
    probes = [
        APIEndpoint(name=name, url=_PROBE_URL, depends_on=[d for d in deps if d in known - {name}])
        for name, deps in nodes
    ]
    try:
        check_graph(probes)
    except ConfigError as exc:
        return str(exc)
    return None


def graph_problems(config: APIOrchestrationConfig) -> str | None:
    """What the plan refuses beyond the config: cycles through template references."""
    try:
        compile_plan(config.endpoints, config.mode)
    except ConfigError as exc:
        return str(exc)
    return None


def cycle(deps: Mapping[str, list[str]]) -> list[str]:
    """The endpoints on one dependency cycle (to mark their fields), or []."""
    known = {name: [d for d in ds if d in deps] for name, ds in deps.items()}
    return _find_cycle(known) or []

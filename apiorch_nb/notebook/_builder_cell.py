"""The builder's run settings, and the ``%%orchestrate`` cell text that carries them.

The cell text is exactly what the magic runs: the magic line (written the way
`Run.to_http` writes it, read back by the magic's own argument parser), then the endpoints
from `to_http`. The circuit breaker's threshold and timeout have no magic flag, so when
they differ from the defaults they ride along in a comment line the magic ignores::

    %%orchestrate --mode hybrid --max-concurrent 4 builder_run <<
    # builder: circuit_breaker_threshold=3 circuit_breaker_timeout=30
    ### login
    ...
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import parse_argstring

from ..config import APIOrchestrationConfig, OrchestrationMode
from ..endpoint import APIEndpoint
from ..errors import ConfigError
from ..httpfile import compile_http, parse_http, to_http
from ..run import Run
from ._builder_fields import number_text, opt_text
from ._options import split_store_target
from .magics import OrchestrateMagics

_MAGIC = "%%orchestrate"
_COMMENTED_MAGIC = re.compile(r"^\s*#\s*%%orchestrate\b")
_BUILDER_COMMENT = re.compile(r"^\s*#\s*builder:\s*(.*)$")
_BREAKER_KEYS = ("circuit_breaker_threshold", "circuit_breaker_timeout")
_DEFAULTS = {f.name: f.default for f in fields(APIOrchestrationConfig)}


@dataclass
class RunSettings:
    """The run settings as the form shows them (text where the form holds text)."""

    mode: str = OrchestrationMode.SEQUENTIAL.value
    max_concurrent: str = str(_DEFAULTS["max_concurrent"])
    total_timeout: str = ""
    fail_fast: bool = False
    rate_limit: str = ""  # "100/60s", the magic's --rate-limit syntax
    cache_ttl: str = ""
    circuit_breaker_threshold: str = str(_DEFAULTS["circuit_breaker_threshold"])
    circuit_breaker_timeout: str = "60"
    input_var: str = ""
    store_as: str | None = None  # None: keep what the form has

    @classmethod
    def from_config(cls, config: APIOrchestrationConfig) -> RunSettings:
        rate = ""
        if config.global_rate_limit is not None:
            rate = f"{config.global_rate_limit}/{number_text(config.rate_limit_window)}s"
        return cls(
            mode=config.mode.value,
            max_concurrent=str(config.max_concurrent),
            total_timeout=opt_text(config.total_timeout),
            fail_fast=config.fail_fast,
            rate_limit=rate,
            cache_ttl=opt_text(config.cache_ttl),
            circuit_breaker_threshold=str(config.circuit_breaker_threshold),
            circuit_breaker_timeout=number_text(config.circuit_breaker_timeout),
        )


def write_cell(
    config: APIOrchestrationConfig, *, store_as: str | None, input_var: str | None
) -> str:
    """The ``%%orchestrate`` cell that runs `config` with the same settings.

    Raises:
        ConfigError: an endpoint that ``.http`` can't express (see `to_http`).
    """
    line = Run(
        mode=config.mode, records={}, results={}, started_at=0.0, ended_at=0.0, config=config
    )._magic_line()
    if input_var:
        line += f" --input {input_var}"
    if store_as:
        line += f" {store_as} <<"
    head = [line]
    breaker = {k: getattr(config, k) for k in _BREAKER_KEYS if getattr(config, k) != _DEFAULTS[k]}
    if breaker:
        pairs = " ".join(f"{k}={number_text(v)}" for k, v in breaker.items())
        head.append(f"# builder: {pairs}")
    return "\n".join(head) + "\n" + to_http(config.endpoints)


def read_cell(
    text: str, namespace: Mapping[str, Any], *, base: Path | None = None
) -> tuple[RunSettings, list[APIEndpoint]]:
    """Settings and endpoints of a ``%%orchestrate`` cell or a ``.http`` text.

    The first line may be the magic line, the commented magic line `Run.to_http` writes,
    or the first line of plain ``.http`` text. Templates resolve as the magic resolves
    them (`namespace`, then the environment); ``-f FILE`` reads FILE relative to `base`.

    Raises:
        CellSyntaxError: the ``.http`` text, naming the line.
        ConfigError: a magic line option the magic would refuse.
    """
    lines = text.splitlines()
    first = lines[0] if lines else ""
    body, first_line, line = text, 1, ""
    if first.lstrip().startswith(_MAGIC):
        line = first.lstrip()[len(_MAGIC) :]
        body, first_line = "\n".join(lines[1:]), 2
    elif _COMMENTED_MAGIC.match(first):
        line = first.split(_MAGIC, 1)[1]
    rest, store_as = split_store_target(line)
    try:
        args = parse_argstring(OrchestrateMagics.orchestrate, rest)
    except (UsageError, ValueError) as exc:
        raise ConfigError(f"the %%orchestrate line: {exc}") from None
    if args.file:
        if body.strip():
            raise ConfigError("-f FILE runs the file: leave the rest of the cell empty")
        path = Path(args.file).expanduser()
        body, first_line = ((base or Path()) / path).read_text(encoding="utf-8"), 1
    settings = RunSettings(store_as=store_as)
    for name in ("mode", "max_concurrent", "total_timeout", "rate_limit", "cache_ttl"):
        value = getattr(args, name)
        if value is not None:
            setattr(settings, name, value if isinstance(value, str) else number_text(value))
    settings.fail_fast = bool(args.fail_fast)
    settings.input_var = args.input_var or ""
    for raw in body.splitlines():
        if match := _BUILDER_COMMENT.match(raw):
            for key, _, value in (p.partition("=") for p in match.group(1).split()):
                if key in _BREAKER_KEYS:
                    setattr(settings, key, value)
    data = namespace.get(settings.input_var) if settings.input_var else None
    compiled = compile_http(
        parse_http(body, first_line=first_line),
        namespace=namespace,
        environ=os.environ,
        input_keys=[str(k) for k in data] if isinstance(data, Mapping) else (),
    )
    return settings, compiled.endpoints

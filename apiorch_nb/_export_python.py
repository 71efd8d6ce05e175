"""`Run.to_python()`: a runnable script that rebuilds a run's config and executes it again.

The script uses the library API only (`APIEndpoint`, `APIOrchestrationConfig`,
`APIOrchestrator`, `OrchestrationMode`) and writes every field that differs from its
default. It never carries a credential:

* ``{$secrets.NAME}`` placeholders stay as they are, and the script passes
  ``secrets={"NAME": os.environ["NAME"]}``;
* a written-out value under a secret-looking name (a header, a parameter, a JSON field of a
  body or of the input, at any depth; a URL's user info or secret-named query parameter)
  becomes an ``os.environ[...]`` expression. An ``Authorization: Bearer x`` header keeps
  its scheme in the script and reads only the token from the environment.

Callables cannot be written as code: a named function is written by name and listed at the
top for the user to define or import; a lambda becomes ``None`` with a comment.
"""

from __future__ import annotations

import inspect
import keyword
import math
import re
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from typing import TYPE_CHECKING, Any

from ._redact import REDACTED, is_secret_name
from ._template import has_placeholders
from .config import APIOrchestrationConfig
from .endpoint import APIEndpoint
from .errors import ConfigError

if TYPE_CHECKING:
    from .run import Run

_SECRET_REF = re.compile(r"\{\$secrets\.([A-Za-z_][\w-]*)\}")
_SCHEME = re.compile(r"^(Bearer|Basic|Token|Digest|Bot|ApiKey) (\S+)$", re.IGNORECASE)
_USERINFO = re.compile(r"^(https?://)([^/@?#]+)@", re.IGNORECASE)
_QUERY_PARAM = re.compile(r"([?&])([^=&#]+)=([^&#]*)")
_NOT_ENV = re.compile(r"[^A-Za-z0-9]+")


class _NotLiteral(Exception):
    """A value the script cannot write as a Python literal."""


def to_python(run: Run) -> str:
    """The script for `run` (see the module docstring for what it contains).

    Raises:
        ConfigError: the run carries no config (it was not made by ``execute``).
    """
    if run.config is None:
        raise ConfigError("this run has no config to export (Run.config is None)")
    return _Writer(run, run.config).script()


class _Writer:
    """Writes one script; collects the env variables and callables it refers to."""

    def __init__(self, run: Run, config: APIOrchestrationConfig) -> None:
        self.run = run
        self.config = config
        self.secret_refs = sorted(
            {name for ep in config.endpoints for name in _secret_refs(_template_fields(ep))}
        )
        self.env: dict[str, str] = {}  # name -> value held, only to tell clashes apart
        self.env_notes: dict[str, str] = {}  # name -> what it holds, for the header comment
        self.callables: list[str] = []  # names the user must define

    def script(self) -> str:
        body = self._config_lines()
        input_src, input_note = self._input_source()
        secrets = ", ".join(f'"{n}": os.environ["{n}"]' for n in self.secret_refs)
        arguments = f"config, secrets={{{secrets}}}" if secrets else "config"
        uses_env = bool(self.secret_refs or self.env_notes)
        out = [
            f'"""Re-run a {self.config.mode.value} orchestration of '
            f"{len(self.config.endpoints)} endpoint(s), exported from an apiorch_nb run.",
            "",
            "Run it with `python <file>.py`; in a notebook cell, `await main()`.",
            'No credential is written here: secrets are read from the environment."""',
            "",
        ]
        if self.callables:
            out.append(
                "# Define these before `config` below (import them or paste their code): "
                + ", ".join(self.callables)
            )
        if uses_env:
            out.append("# Environment variables this script reads:")
            out += [f"#   {n}: secret {{$secrets.{n}}}" for n in self.secret_refs]
            out += [f"#   {n}: {note}" for n, note in self.env_notes.items()]
        if self.callables or uses_env:
            out.append("")
        out += ["import asyncio", *(["import os"] if uses_env else []), ""]
        out += [
            "from apiorch_nb import (",
            "    APIEndpoint,",
            "    APIOrchestrationConfig,",
            "    APIOrchestrator,",
            "    OrchestrationMode,",
            ")",
            "",
            *body,
            "",
            f"run_input = {input_src}{_comment(input_note)}",
            "",
            "",
            "async def main():",
            '    """Run the orchestration once; print its summary line; return the result."""',
            f"    async with APIOrchestrator({arguments}) as orchestrator:",
            "        result = await orchestrator.execute(run_input)",
            "    print(orchestrator.last_run)",
            "    return result",
            "",
            "",
            'if __name__ == "__main__":',
            "    asyncio.run(main())",
        ]
        return "\n".join(out) + "\n"

    # -- config and endpoints ----------------------------------------------------------------

    def _config_lines(self) -> list[str]:
        out = ["config = APIOrchestrationConfig(", "    endpoints=["]
        for ep in self.config.endpoints:
            out.append("        APIEndpoint(")
            for f in fields(APIEndpoint):
                value = getattr(ep, f.name)
                if f.name not in ("name", "url") and _is_default(f, value):
                    continue
                src, note = self._endpoint_field(ep, f.name, value)
                out.append(f"            {f.name}={src},{_comment(note)}")
            out.append("        ),")
        out += ["    ],", f"    mode=OrchestrationMode.{self.config.mode.name},"]
        for f in fields(APIOrchestrationConfig):
            value = getattr(self.config, f.name)
            if f.name in ("endpoints", "mode") or _is_default(f, value):
                continue
            src, note = self._field(value, where=f"config.{f.name}", owner="config")
            out.append(f"    {f.name}={src},{_comment(note)}")
        out.append(")")
        return out

    def _endpoint_field(self, ep: APIEndpoint, name: str, value: Any) -> tuple[str, str]:
        if name == "url" and isinstance(value, str):
            return self._url(value, ep.name), ""
        if name == "retry_on":
            return self._value(sorted(value), where="", owner=ep.name), ""
        return self._field(value, where=f"endpoint {ep.name!r} {name}", owner=ep.name)

    def _field(self, value: Any, *, where: str, owner: str) -> tuple[str, str]:
        if callable(value) and not isinstance(value, (str, bytes, dict, list, tuple)):
            return self._callable(value)
        try:
            return self._value(value, where=where, owner=owner), ""
        except _NotLiteral as exc:
            return "None", f"{where}: {exc} in the original run is not a Python literal"

    def _input_source(self) -> tuple[str, str]:
        try:
            return self._value(self.run.input, where="the run's input", owner="input"), ""
        except _NotLiteral as exc:
            return "None", f"the original input ({exc}) is not a Python literal; set it here"

    def _callable(self, func: Callable[..., Any]) -> tuple[str, str]:
        name = getattr(func, "__name__", None)
        if name == "<lambda>":
            return "None", "<lambda> in the original run: not exportable"
        if inspect.ismethod(func):
            return "None", f"method {func.__qualname__} in the original run: not exportable"
        if isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name):
            if name not in self.callables:
                self.callables.append(name)
            return name, ""
        return "None", f"a {type(func).__name__} in the original run: not exportable"

    # -- values --------------------------------------------------------------------------------

    def _value(self, value: Any, *, where: str, owner: str) -> str:
        """`value` as Python source; secret-named dict entries read the environment."""
        if value is None or isinstance(value, bool):
            return repr(value)
        if isinstance(value, int):
            return int.__repr__(value)
        if isinstance(value, float):
            text = float.__repr__(value)
            return text if math.isfinite(value) else f'float("{text}")'
        if isinstance(value, str):
            return self._str(value)
        if isinstance(value, (bytes, bytearray)):
            return repr(bytes(value))
        if isinstance(value, dict):
            items = []
            for key, item in value.items():
                if not isinstance(key, (str, int, float, bool, type(None))):
                    raise _NotLiteral(f"a dict key of type {type(key).__name__}")
                key_src = self._value(key, where=where, owner=owner)
                if isinstance(key, str) and _is_credential(key, item):
                    item_src = self._env_expr(key, item, f"{where}[{key!r}]", owner)
                else:
                    item_src = self._value(item, where=f"{where}[{key!r}]", owner=owner)
                items.append(f"{key_src}: {item_src}")
            return "{" + ", ".join(items) + "}"
        if isinstance(value, (list, tuple)):
            parts = [self._value(v, where=where, owner=owner) for v in value]
            if isinstance(value, list):
                return "[" + ", ".join(parts) + "]"
            return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
        raise _NotLiteral(f"a {type(value).__name__}")

    def _str(self, text: str) -> str:
        source = repr(self.run._hide(str.__str__(text)))
        if source.startswith("'") and '"' not in source:  # the quotes ruff format would use
            source = f'"{source[1:-1]}"'
        return source

    def _url(self, url: str, owner: str) -> str:
        """The URL as source: a literal, or literals joined with env reads for credentials."""
        pieces: list[str] = []
        pos = 0
        userinfo = _USERINFO.match(url)
        if userinfo and not has_placeholders(userinfo.group(2)):
            pieces.append(self._str(userinfo.group(1)))
            where = f"endpoint {owner!r} URL user info"
            pieces.append(self._env_expr("userinfo", userinfo.group(2), where, owner))
            pos = userinfo.end(2)
        query = url.find("?", pos)
        for match in _QUERY_PARAM.finditer(url, query) if query >= 0 else ():
            key, value = match.group(2), match.group(3)
            if is_secret_name(key) and _is_credential(key, value):
                pieces.append(self._str(url[pos : match.start(3)]))
                where = f"endpoint {owner!r} URL query {key!r} (URL-encoded)"
                pieces.append(self._env_expr(key, value, where, owner))
                pos = match.end(3)
        if pos < len(url) or not pieces:
            pieces.append(self._str(url[pos:]))
        return " + ".join(pieces)

    def _env_expr(self, key: str, value: Any, where: str, owner: str) -> str:
        """An expression reading a credential from the environment, named after `key`."""
        prefix = ""
        if isinstance(value, str) and (scheme := _SCHEME.match(value)):
            prefix = f"{scheme.group(1)} "
            value = scheme.group(2)
            where += f" (after {prefix.strip()!r})"
        name = self._env_name(key, str(value), owner)
        self.env_notes.setdefault(name, where)
        read = f'os.environ["{name}"]'
        if isinstance(value, int):
            read = f"int({read})"
        elif isinstance(value, float):
            read = f"float({read})"
        return f"{self._str(prefix)} + {read}" if prefix else read

    def _env_name(self, key: str, value: str, owner: str) -> str:
        """``X-API-Key`` -> ``X_API_KEY``; qualified by owner when that name holds another value."""
        taken = set(self.secret_refs)
        for candidate in (_env_name(key), _env_name(f"{owner}_{key}")):
            if candidate not in taken and self.env.get(candidate, value) == value:
                self.env[candidate] = value
                return candidate
        n = 2
        while (candidate := f"{_env_name(f'{owner}_{key}')}_{n}") in taken or self.env.get(
            candidate, value
        ) != value:
            n += 1
        self.env[candidate] = value
        return candidate


def _is_credential(key: str, value: Any) -> bool:
    """A written-out value under a secret-looking name (not a placeholder, not empty)."""
    if not is_secret_name(key) or isinstance(value, bool):
        return False
    if isinstance(value, str):
        return bool(value) and value != REDACTED and not has_placeholders(value)
    return isinstance(value, (int, float))


def _is_default(f: Field[Any], value: Any) -> bool:
    if f.default is not MISSING:
        default = f.default
    elif f.default_factory is not MISSING:
        default = f.default_factory()
    else:
        return False
    if f.name == "retry_on":
        return frozenset(value) == frozenset(default)
    try:
        return bool(type(value) is type(default) and value == default) or (
            value is None and default is None
        )
    except Exception:  # a value whose == is not a plain bool (arrays, odd objects)
        return False


def _template_fields(ep: APIEndpoint) -> list[Any]:
    return [ep.url, ep.params, ep.headers, ep.body]


def _secret_refs(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_SECRET_REF.findall(value))
    if isinstance(value, dict):
        return set().union(*(_secret_refs(k) | _secret_refs(v) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return set().union(*(_secret_refs(v) for v in value))
    return set()


def _env_name(text: str) -> str:
    name = _NOT_ENV.sub("_", text).strip("_").upper() or "SECRET"
    return f"_{name}" if name[0].isdigit() else name


def _comment(note: str) -> str:
    return f"  # {note}" if note else ""

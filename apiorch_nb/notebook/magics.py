"""``%%orchestrate`` / ``%orchestrate``: run a ``.http``-style cell on the kernel's event loop.

With ``--over VAR`` the cell runs once per row of a DataFrame (`_map_cell.py`). The cell
magic itself is synchronous, as IPython requires; `loop.py` rewrites every
``%%orchestrate`` cell into ``await run_cell_async(...)`` before IPython compiles it, so the
run happens on the kernel's own loop and the stop button cancels it. The synchronous magic
remains for callers that bypass the rewrite (``run_cell_magic``) outside a running loop.
"""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, CaselessStrEnum, Float, Int, TraitError, Unicode, validate
from traitlets.config import Configurable

from .. import APIOrchestrationConfig, APIOrchestrator, OrchestrationMode, Run
from .._redact import redact_url
from ..errors import ConfigError, OrchestrationError
from ..httpfile import compile_http, parse_http
from . import display as nbdisplay
from ._backends import KernelBackends, check_url
from ._map_cell import check_fields, row_keys, run_map_cell
from ._options import CellOptions, parse_fields, parse_rate, split_store_target
from .progress import progress_observer

_MODES = [m.value for m in OrchestrationMode]


@magics_class
class OrchestrateMagics(Magics, Configurable):  # type: ignore[misc]
    """Runs ``%%orchestrate`` cells; its traits are the defaults ``%config`` can change.

    Example::

        %config OrchestrateMagics.mode = "parallel"
        %config OrchestrateMagics.max_concurrent = 20
    """

    mode = CaselessStrEnum(
        _MODES,
        default_value="sequential",
        config=True,
        help="Orchestration mode when --mode is not given.",
    )
    max_concurrent = Int(10, config=True, help="Calls in flight at once.")
    total_timeout = Float(
        None, allow_none=True, config=True, help="Seconds for the whole run; None for no limit."
    )
    fail_fast = Bool(False, config=True, help="Cancel the rest at the first failure.")
    rate_limit = Unicode(
        None, allow_none=True, config=True, help="Global rate limit such as '100/min'."
    )
    cache_ttl = Float(
        None, allow_none=True, config=True, help="Seconds to cache GET/HEAD responses across runs."
    )
    allow_failures = Bool(False, config=True, help="Do not fail the cell when an endpoint failed.")
    quiet = Bool(False, config=True, help="Show nothing; only store the run.")
    map_timeout = Float(
        None, allow_none=True, config=True, help="Seconds for a whole --over map; None for none."
    )
    cache = Unicode(
        "memory",
        config=True,
        help="Where cached responses live: memory, sqlite:///path.db or redis://host:port/db.",
    )
    limiter = Unicode(
        "memory",
        config=True,
        help="Where rate limits and circuit breakers live: memory, or redis://host:port/db "
        "to share them with every kernel and process using that Redis.",
    )

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        # Kept for the kernel's life, so `@cache` and rate limits hold across cells.
        self.backends = KernelBackends()
        self._secrets: dict[str, str] = {}

    @validate("cache", "limiter")
    def _check_backend_url(self, proposal: Any) -> str:
        try:
            return check_url(proposal["value"], proposal["trait"].name)
        except ConfigError as exc:
            raise TraitError(str(exc)) from None

    # -- the magics IPython sees -------------------------------------------------------------

    @magic_arguments()
    @argument(
        "-m",
        "--mode",
        choices=_MODES,
        help="sequential, parallel, fanout, pipeline, conditional or hybrid",
    )
    @argument("-c", "--max-concurrent", type=int, help="calls in flight at once")
    @argument("-t", "--total-timeout", type=float, help="seconds for the whole run")
    @argument(
        "--fail-fast",
        action="store_true",
        default=None,
        help="cancel the rest at the first failure",
    )
    @argument("--rate-limit", help="global rate limit, e.g. 100/min or 10/s")
    @argument("--cache-ttl", type=float, help="seconds to cache GET/HEAD responses")
    @argument("-i", "--input", dest="input_var", help="notebook variable holding the run's input")
    @argument(
        "--allow-failures",
        action="store_true",
        default=None,
        help="show failures but do not fail the cell",
    )
    @argument("--dry-run", action="store_true", help="show the plan and graph; send nothing")
    @argument("-q", "--quiet", action="store_true", default=None, help="display nothing")
    @argument("-f", "--file", help="run a .http file instead of the cell")
    @argument(
        "-o", "--over", dest="over_var", help="a DataFrame or list of dicts: run once per row"
    )
    @argument("--fields", help="columns of an --over result: 'user.name, city=user.address.city'")
    @argument("--map-timeout", type=float, help="seconds for the whole --over map")
    @argument("--cache", dest="cache_url", help="memory, sqlite:///path.db or redis://...")
    @argument(
        "--limiter", dest="limiter_url", help="memory or redis://... (shares limits and breakers)"
    )
    @cell_magic
    def orchestrate(self, line: str, cell: str = "") -> Any:
        """Run the cell's requests (``.http`` syntax) as one orchestration.

        ``%%orchestrate [options] [NAME <<]`` stores the run in NAME. The cell's requests are
        separated by ``###``; ``# @name``, ``# @depends_on``, ``# @retry``, ``# @timeout``,
        ``# @rate_limit``, ``# @burst``, ``# @cache``, ``# @condition`` and friends set each
        request's orchestration; ``{{...}}`` fills from earlier responses, the input,
        notebook variables and the environment. ``--over df`` runs them once per row of
        ``df`` (``{{id}}`` is the row's ``id``) and stores a DataFrame of ``--fields``,
        ``status`` and ``error`` aligned with ``df``.
        """
        return self._run_blocking(line, cell)

    @line_magic("orchestrate")
    def orchestrate_line(self, line: str) -> Any:
        """``%orchestrate -f requests.http [options] [NAME <<]``: run a .http file."""
        return self._run_blocking(line, None)

    # -- %orchestrate_builder (the widget builder, notebook/builder.py) ----------------------

    @line_magic("orchestrate_builder")
    def orchestrate_builder(self, line: str) -> Any:
        """``%orchestrate_builder [FILE.http | RUN]``: a form that builds and runs an
        orchestration, empty, from a ``.http`` file or from a `Run` in the notebook."""
        from .builder import Builder

        arg = line.strip()
        ns = self.shell.user_ns
        try:
            if not arg:
                return Builder(namespace=ns)
            if isinstance(ns.get(arg), Run):
                return Builder.from_run(ns[arg], namespace=ns)
            if arg.endswith((".http", ".rest")):
                return Builder.from_file(arg, namespace=ns)
        except (ConfigError, OSError) as exc:
            raise UsageError(f"%orchestrate_builder {arg}: {exc}") from None
        raise UsageError(
            f"%orchestrate_builder takes a .http file or a variable holding a run, got {arg!r}"
        )

    # -- the real work -----------------------------------------------------------------------

    async def run_async(self, line: str, cell: str | None) -> Any:
        """Parse, run and display one orchestration; the rewritten cell awaits this.

        Returns the run, or with ``--over`` the map's DataFrame (None with ``--quiet``).

        Raises:
            UsageError: a bad cell or option, a failed endpoint or row (unless
                --allow-failures), or an interrupted run or map: one readable line, and
                the cell still fails.
        """
        opts = self.options(line)
        text, first_line = self._source(opts, cell)
        rows = self._variable("--over", opts.over_var)
        keys = row_keys(rows, str(opts.over_var)) if opts.over_var else _keys(self._input(opts))
        try:
            compiled = compile_http(
                parse_http(text, first_line=first_line),
                namespace=self.shell.user_ns if self.shell is not None else {},
                environ=os.environ,
                input_keys=keys,
            )
            config = self._config(opts, compiled.endpoints)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        check_fields(opts.fields, [ep.name for ep in config.endpoints])
        if opts.dry_run:
            plan = nbdisplay.show_plan(config, compiled.secret_names)
            if opts.store_as:
                self.shell.user_ns[opts.store_as] = plan
            return None
        orchestrator = self._orchestrator(opts, config, compiled.secret_names)
        if opts.over_var is not None:
            return await run_map_cell(orchestrator, rows, opts, self.shell.user_ns)
        interrupted = False
        error: BaseException | None = None
        try:
            await orchestrator.execute(
                self._input(opts), observer=None if opts.quiet else progress_observer()
            )
        except asyncio.CancelledError:
            # The stop button. The engine has already recorded every call as done or
            # cancelled; at this boundary (the cell's own task) the interrupt becomes the
            # one-line UsageError below, which still fails the cell, instead of a traceback.
            interrupted = True
        except OrchestrationError as exc:
            error = exc
        finally:
            await orchestrator.close()
        run = orchestrator.last_run
        assert run is not None
        if opts.store_as:
            self.shell.user_ns[opts.store_as] = run
        if interrupted or (not opts.allow_failures and (error is not None or not run.ok)):
            if not opts.quiet:
                nbdisplay.show_run(run)
            raise UsageError(
                nbdisplay.failure_message(run, interrupted=interrupted, store=opts.store_as)
            )
        return None if opts.quiet else run

    def options(self, line: str) -> CellOptions:
        """The magic line merged over the %config defaults."""
        rest, store_as = split_store_target(line)
        try:
            args = parse_argstring(self.orchestrate, rest)
        except ValueError as exc:  # shlex: unbalanced quotes; argparse errors are UsageErrors
            raise UsageError(f"cannot read the magic line: {exc}") from None
        try:
            rate = args.rate_limit or self.rate_limit
            opts = CellOptions(
                mode=args.mode or self.mode,
                max_concurrent=_pick(args.max_concurrent, self.max_concurrent),
                total_timeout=_pick(args.total_timeout, self.total_timeout),
                fail_fast=_pick(args.fail_fast, self.fail_fast),
                rate_limit=parse_rate(rate) if rate else None,
                cache_ttl=_pick(args.cache_ttl, self.cache_ttl),
                input_var=args.input_var,
                allow_failures=_pick(args.allow_failures, self.allow_failures),
                dry_run=args.dry_run,
                quiet=_pick(args.quiet, self.quiet),
                file=args.file,
                store_as=store_as,
                over_var=args.over_var,
                fields=parse_fields(args.fields) if args.fields is not None else None,
                map_timeout=_pick(args.map_timeout, self.map_timeout),
                cache_url=check_url(_pick(args.cache_url, self.cache), "cache"),
                cache_given=args.cache_url is not None,
                limiter_url=check_url(_pick(args.limiter_url, self.limiter), "limiter"),
            )
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        _check_map_options(opts, args)
        return opts

    def _run_blocking(self, line: str, cell: str | None) -> Any:
        """For callers that bypass the rewrite: run on a private loop if none is running."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run_async(line, cell))
        raise UsageError(
            "%%orchestrate must run as its own cell (it awaits on the kernel's event loop); "
            "it cannot be called through run_cell_magic from running async code"
        )

    def _source(self, opts: CellOptions, cell: str | None) -> tuple[str, int]:
        if opts.file:
            if cell is not None and cell.strip():
                raise UsageError("-f FILE runs the file; leave the cell empty (or drop -f)")
            path = Path(opts.file).expanduser()
            try:
                return path.read_text(encoding="utf-8"), 1
            except OSError as exc:
                raise UsageError(f"cannot read {opts.file}: {exc.strerror}") from None
        if cell is None or not cell.strip():
            raise UsageError("nothing to run: write requests in the cell, or use -f FILE.http")
        return cell, 2  # line 1 of the cell is the %%orchestrate line

    def _input(self, opts: CellOptions) -> Any:
        return self._variable("--input", opts.input_var)

    def _variable(self, flag: str, name: str | None) -> Any:
        if name is None:
            return None
        ns = self.shell.user_ns if self.shell is not None else {}
        if name not in ns:
            raise UsageError(f"{flag} {name}: no such variable in the notebook")
        return ns[name]

    def _orchestrator(
        self, opts: CellOptions, config: APIOrchestrationConfig, secret_names: set[str]
    ) -> APIOrchestrator:
        """An orchestrator on this kernel's backends for the cell's ``--cache``/``--limiter``.

        Raises:
            UsageError: a backend URL that cannot be opened, or ``--cache`` on a cell
                where nothing would be cached (no TTL anywhere).
        """
        if opts.cache_given and not config.caches:
            raise UsageError(
                f"--cache {redact_url(opts.cache_url)}: nothing is cached without a TTL; "
                "add --cache-ttl SECONDS or `# @cache SECONDS` to a request"
            )
        try:
            return APIOrchestrator(
                config,
                limiter=self.backends.limiter(opts.limiter_url),
                # a %config default backend is opened only by cells that cache something
                cache=self.backends.cache(opts.cache_url) if config.caches else None,
                breakers=self.backends.breakers(opts.limiter_url),
                secrets=self._secret_values(secret_names),
            )
        except ConfigError as exc:
            raise UsageError(str(exc)) from None

    def _config(self, opts: CellOptions, endpoints: list[Any]) -> APIOrchestrationConfig:
        rate, window = opts.rate_limit if opts.rate_limit else (None, 60.0)
        return APIOrchestrationConfig(
            endpoints=endpoints,
            mode=OrchestrationMode(opts.mode),
            max_concurrent=opts.max_concurrent,
            total_timeout=opts.total_timeout,
            fail_fast=opts.fail_fast,
            global_rate_limit=rate,
            rate_limit_window=window,
            cache_ttl=opts.cache_ttl,
        )

    def _secret_values(self, names: set[str]) -> dict[str, str]:
        """``{{$secret NAME}}``: the environment variable NAME (read on every run, so a
        rotated token is picked up), else a hidden prompt answered once per kernel."""
        values: dict[str, str] = {}
        for name in sorted(names):
            value = os.environ.get(name)
            if value is None:
                if name not in self._secrets:
                    self._secrets[name] = getpass.getpass(
                        f"{name} (hidden, asked once per kernel): "
                    )
                value = self._secrets[name]
            values[name] = value
        return values


def _check_map_options(opts: CellOptions, args: Any) -> None:
    """``--over`` excludes ``--input``; ``--fields`` and ``--map-timeout`` need ``--over``."""
    if opts.over_var is None:
        for flag, value in (("--fields", args.fields), ("--map-timeout", args.map_timeout)):
            if value is not None:
                raise UsageError(f"{flag} is for maps; add --over VAR to run once per row")
        return
    if opts.input_var is not None:
        raise UsageError("--over runs once per row and each row is that run's input; drop --input")
    if opts.map_timeout is not None and opts.map_timeout <= 0:
        raise UsageError(f"--map-timeout must be > 0 seconds, got {opts.map_timeout:g}")


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _keys(value: Any) -> list[str]:
    return [str(k) for k in value] if isinstance(value, Mapping) else []

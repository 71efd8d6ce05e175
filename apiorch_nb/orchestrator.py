"""`APIOrchestrator`, the facade scripts and notebooks use, and the spec's two factories."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp

from . import _http, backends
from ._call import CallRecord
from ._call_runner import Services
from ._map import drive, run_rows
from ._plan import compile_plan
from ._rows import is_dask_frame, table_rows
from ._scheduler import RunLimits, Scheduler
from ._shutdown import close_at_shutdown
from .breaker import BreakerStore, CircuitBreaker
from .cache import Cache, MemoryCache
from .config import APIOrchestrationConfig, OrchestrationMode
from .endpoint import APIEndpoint
from .enrich import FieldsSpec, MapRun, compile_fields
from .errors import ConfigError, RunAborted
from .metrics import IOMetrics, MetricsSnapshot
from .progress import MapObserver, RunObserver, Watch
from .ratelimit import InMemoryRateLimiter, Limiter, RateLimit
from .retry import RetryPolicy
from .run import Run

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger("apiorch_nb")
_DEFAULT: Any = object()  # `execute(observer=...)` not given: use `default_observer`

#: Limiter category that every request counts against when ``global_rate_limit`` is set.
GLOBAL_CATEGORY = "global"


def endpoint_category(name: str) -> str:
    """The limiter category holding endpoint `name`'s rate and burst limits."""
    return f"endpoint:{name}"


class APIOrchestrator:
    """Runs an `APIOrchestrationConfig` on aiohttp; keeps limits, breakers, cache and metrics
    across runs.

    One aiohttp session is kept per event loop and closed by `close()`, by ``async with``,
    or when the loop shuts down (``asyncio.run``), so reusing an orchestrator in a new loop
    just works (one loop at a time).

    `secrets` maps names to values that templates reach as ``{$secrets.NAME}``; their
    values are scrubbed from run records, error messages and logs.

    `cache`, `limiter` and `breakers` choose where that state lives: a backend object or a
    URL (see `apiorch_nb.backends`). ``cache="sqlite:///enrich.db"`` survives a kernel
    restart; ``"redis://host:6379/0"`` for all three shares them with every kernel, process
    and Dask worker that uses the same Redis, so together they never exceed a limit.

    Example::

        async with APIOrchestrator(config) as orchestrator:
            result = await orchestrator.execute({"user_id": 123})
            print(orchestrator.get_metrics().success_rate)
    """

    def __init__(
        self,
        config: APIOrchestrationConfig,
        *,
        limiter: Limiter | str | None = None,
        cache: Cache | str | None = None,
        breakers: BreakerStore | str | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(config, APIOrchestrationConfig):
            raise ConfigError(f"APIOrchestrator needs an APIOrchestrationConfig, got {config!r}")
        self.config = config
        #: The backends given as URLs, so a Dask worker can rebuild the same orchestrator.
        self.backend_urls = {
            k: v
            for k, v in (("limiter", limiter), ("cache", cache), ("breakers", breakers))
            if isinstance(v, str)
        }
        if isinstance(limiter, str):
            limiter = backends.limiter_from_url(limiter)
        if isinstance(cache, str):
            scheme = backends.url_scheme(cache, "cache")  # (no sqlite3 import for others)
            cache = backends.cache_from_url(cache)
            if scheme == "sqlite":  # resolved here, not in each Dask worker's own directory
                self.backend_urls["cache"] = cache.url  # type: ignore[attr-defined]
        breaker_store = (
            backends.breaker_store_from_url(breakers) if isinstance(breakers, str) else breakers
        )
        self._plan = compile_plan(config.endpoints, config.mode)
        self._metrics = IOMetrics() if config.metrics_enabled else None
        self._limiter = limiter if limiter is not None else InMemoryRateLimiter()
        categories = self._configure_limits(config)
        self._services = Services(
            limiter=self._limiter,
            categories=categories,
            breakers={
                ep.name: CircuitBreaker(
                    config.circuit_breaker_threshold, config.circuit_breaker_timeout, name=ep.name
                )
                for ep in config.endpoints
            },
            policies={
                ep.name: RetryPolicy(ep.retry_count, ep.retry_delay, ep.retry_on)
                for ep in config.endpoints
            },
            cache=(cache if cache is not None else MemoryCache()) if config.caches else None,
            cache_ttls={
                ep.name: ttl
                for ep in config.endpoints
                if (ttl := ep.cache_ttl if ep.cache_ttl is not None else config.cache_ttl)
            },
            cache_key_generator=config.cache_key_generator,
            breaker_store=breaker_store,
            log_requests=config.log_requests,
            log_responses=config.log_responses,
            secrets={str(k): str(v) for k, v in (secrets or {}).items()},
        )
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._session_keeper: AsyncGenerator[None, None] | None = None
        #: The record of the most recent ``execute``: live while it runs (``finished`` is
        #: False), final afterwards, also when it raised or was cancelled.
        self.last_run: Run | None = None
        #: The record of the most recent ``map``, kept the same way: every finished row
        #: survives an interrupt, a timeout or an error.
        self.last_map: MapRun | None = None

    def _configure_limits(self, config: APIOrchestrationConfig) -> dict[str, tuple[str, ...]]:
        window = config.rate_limit_window
        if config.global_rate_limit is not None:
            self._limiter.configure(GLOBAL_CATEGORY, [RateLimit(config.global_rate_limit, window)])
        categories: dict[str, tuple[str, ...]] = {}
        for ep in config.endpoints:
            rates = []
            if ep.rate_limit is not None:
                rates.append(RateLimit(ep.rate_limit, ep.rate_limit_window or window))
            if ep.burst_limit is not None:
                rates.append(RateLimit(ep.burst_limit, 1.0))
            cats = []
            if rates:
                self._limiter.configure(endpoint_category(ep.name), rates)
                cats.append(endpoint_category(ep.name))
            if config.global_rate_limit is not None:
                cats.append(GLOBAL_CATEGORY)
            if cats:
                categories[ep.name] = tuple(cats)
        return categories

    @property
    def endpoints(self) -> list[APIEndpoint]:
        return self.config.endpoints

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        """Each endpoint's circuit breaker; their state lasts across runs."""
        return self._services.breakers

    @property
    def limiter(self) -> Limiter:
        return self._limiter

    #: Makes the observer used when `execute` is given none (None: no observer). The
    #: notebook extension sets it so that runs in a notebook show live progress.
    default_observer: ClassVar[Callable[[], RunObserver | None] | None] = None

    async def execute(self, data: Any = None, *, observer: Any = _DEFAULT) -> Any:
        """Run every endpoint once; return ``{name: result}`` or the ``result_merger``'s value.

        `data` is the run's input: it fills templates, is what conditions and
        ``transform_input`` see, and is sent as the JSON body of POST/PUT/PATCH endpoints
        that have no ``body`` of their own. Skipped endpoints are absent from the result;
        a failed one holds its ``error_handler``'s value or ``{"error": ..., "status": ...}``.
        `observer` (a `RunObserver`) watches the run live; None turns the default off.

        Raises:
            FailFastError: ``fail_fast`` and an endpoint failed unrescued.
            ErrorThresholdExceeded: too large a share of the endpoints failed.
            OrchestrationTimeout: ``total_timeout`` ran out.
            ConfigError: a template or URL that cannot be filled at run time.
        """
        await self._session_for_running_loop()
        cfg = self.config
        started = time.monotonic()
        scheduler = Scheduler(
            self._plan,
            self._services,
            RunLimits(cfg.max_concurrent, cfg.total_timeout, cfg.fail_fast, cfg.error_threshold),
            run_input=data,
            metrics=self._metrics,
        )
        run = Run(
            mode=cfg.mode,
            records=scheduler.records,
            results=scheduler.results,
            started_at=started,
            ended_at=started,
            config=cfg,
            edges=self._plan.edges(),
            input=data,
            secret_values=tuple(self._services.secrets.values()),
            finished=False,
        )
        # The live run replaces the previous one now, not at the end: the old records are
        # freed before the new ones pile up (less for the garbage collector to walk).
        self.last_run = run
        watch = Watch.start(self._observer(observer, type(self).default_observer), run)
        scheduler.on_call_finished = watch.call_finished if watch else None
        error: BaseException | None = None
        try:
            error = await scheduler.run()
        except asyncio.CancelledError as exc:
            error = exc
            raise
        finally:
            run.results = scheduler.ordered_results()
            run.ended_at = time.monotonic()
            run.error = error
            run.finished = True
            self.last_run = run
            if watch:
                watch.run_finished()
        if error is not None:
            if isinstance(error, RunAborted):
                error.run = run
            raise error
        if cfg.result_merger is not None:
            run.data = cfg.result_merger(list(run.results.values()))
        else:
            run.data = run.results
        return run.data

    @staticmethod
    def _observer(given: Any, factory: Callable[[], Any] | None) -> Any:
        """`given`, or when none was given, what `factory` (the class default) makes."""
        if given is not _DEFAULT:
            return given
        return factory() if factory is not None else None

    #: Makes the observer used when `map` is given none; the notebook sets it (a progress
    #: bar with counts, rate and ETA).
    default_map_observer: ClassVar[Callable[[], MapObserver | None] | None] = None

    async def map(
        self,
        rows: Any,
        *,
        fields: FieldsSpec = None,
        max_concurrent: int | None = None,
        timeout: float | None = None,
        client: Any = None,
        observer: Any = _DEFAULT,
    ) -> pd.DataFrame:
        """Run the endpoint graph once per row; return a DataFrame indexed like `rows`.

        Each row (of a DataFrame, a Dask DataFrame or a list of dicts) is one run's input,
        so ``{id}`` in a URL fills from the row's ``id`` column. The result has a column per
        field (`fields`: None for each endpoint's whole result, ``"user.name"`` paths, or
        ``{column: path or callable(results)}``), then ``status`` and ``error``; join it to
        the input with ``df.join(result)``. ``max_concurrent`` (default: the config's)
        caps the calls in flight across all rows; rate limits, retries, breakers and the
        cache apply as in `execute`, and ``total_timeout``/``fail_fast`` apply per row.

        Nothing is lost: ``last_map`` is the live record, kept when the map is interrupted
        or times out. With a persistent cache (``cache="sqlite:///..."``) running the same
        map again sends only the rows that did not finish.

        `client` spreads the rows over a Dask cluster: a ``distributed.Client``, or
        ``"local"`` to start a `LocalCluster` for this map. Each worker runs this engine;
        rate limits must then be shared (``limiter="redis://..."``). Without a client the
        map runs in this kernel, a Dask DataFrame's rows included.

        Raises:
            MapTimeout: `timeout` seconds passed; ``.map_run`` holds every row.
            ConfigError: `rows`, `fields` or `max_concurrent` cannot work.
        """
        concurrency = _concurrency(
            self.config.max_concurrent if max_concurrent is None else max_concurrent
        )
        watcher = self._observer(observer, type(self).default_map_observer)
        if client is None and is_dask_frame(rows):
            # No client: the map runs here, on the frame's rows (computed off the loop).
            rows = await asyncio.to_thread(rows.compute)
        if client is not None:
            from ._dask import map_on_dask

            return await map_on_dask(
                self,
                rows,
                client=client,
                fields=fields,
                max_concurrent=concurrency,
                timeout=timeout,
                observer=watcher,
            )
        index, inputs, index_names = table_rows(rows)
        names = [ep.name for ep in self.config.endpoints]
        mrun = MapRun(index, inputs, compile_fields(fields, names), index_names=index_names)
        mrun.secret_values = tuple(self._services.secrets.values())
        self.last_map = mrun
        await self._session_for_running_loop()
        return await drive(
            mrun,
            lambda on_row: run_rows(self, mrun, max_concurrent=concurrency, on_row=on_row),
            timeout,
            watcher,
        )

    def plan(self) -> Run:
        """What `execute` would run, without sending anything: every call pending, the graph."""
        now = time.monotonic()
        records = {
            n.name: CallRecord(n.name, n.endpoint.method, n.display_url)
            for n in sorted(self._plan.nodes, key=lambda n: n.index)
        }
        return Run(
            mode=self.config.mode,
            records=records,
            results={},
            started_at=now,
            ended_at=now,
            config=self.config,
            edges=self._plan.edges(),
        )

    def get_metrics(self) -> MetricsSnapshot:
        """Totals over every run of this orchestrator (empty if metrics are disabled)."""
        return (self._metrics or IOMetrics()).snapshot()

    def clear_cache(self, name: str) -> None:
        """Forget endpoint `name`'s cached responses.

        Raises:
            ConfigError: no endpoint has that name.
        """
        if name not in self._services.breakers:
            raise ConfigError(
                f"clear_cache: no endpoint named {name!r}; known: {sorted(self._services.breakers)}"
            )
        if self._services.cache is not None:
            self._services.cache.clear(name)

    def clear_all_cache(self) -> None:
        """Forget every cached response."""
        if self._services.cache is not None:
            self._services.cache.clear()

    # -- session lifecycle -------------------------------------------------------------------

    async def _session_for_running_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._services.session
        if session is not None and self._session_loop is loop and not session.closed:
            return session
        if session is not None and self._session_loop is not loop:
            _abandon(session)
        session = _http.new_session()
        # An async generator parked on `yield` is finalised by the loop's shutdown
        # (asyncio.run calls shutdown_asyncgens) or by garbage collection on its loop,
        # which closes the session there even if close() is never called.
        keeper = close_at_shutdown(session.close)
        await keeper.__anext__()
        self._services.session = session
        self._session_loop = loop
        self._session_keeper = keeper
        return session

    async def close(self) -> None:
        """Close the aiohttp session (and its connections). The orchestrator stays usable."""
        keeper, self._session_keeper = self._session_keeper, None
        session, self._services.session = self._services.session, None
        if keeper is not None and self._session_loop is asyncio.get_running_loop():
            await keeper.aclose()
        elif session is not None:
            _abandon(session)
        self._session_loop = None

    async def __aenter__(self) -> APIOrchestrator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return (
            f"APIOrchestrator(mode={self.config.mode.value}, "
            f"endpoints={[ep.name for ep in self.config.endpoints]})"
        )


def _concurrency(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"map: max_concurrent must be an int >= 1, got {value!r}")
    return value


def _abandon(session: aiohttp.ClientSession) -> None:
    """Drop a session whose loop is gone or elsewhere: mark it closed, close its sockets."""
    connector = session.connector
    with contextlib.suppress(Exception):
        session.detach()
    if connector is not None:
        with contextlib.suppress(Exception):
            connector._close()  # sync part of close(); the old loop cannot run the rest


def create_sequential_api_chain(
    endpoints: Sequence[tuple[str, str]],
    headers: dict[str, str] | None = None,
    *,
    method: str = "GET",
    **options: Any,
) -> APIOrchestrator:
    """An orchestrator that calls ``(name, url)`` pairs one after another.

    `headers` go on every request; other keyword arguments are `APIOrchestrationConfig`
    fields (``total_timeout``, ``fail_fast``, ...) or, if they name an `APIEndpoint`
    field (``timeout``, ``retry_count``, ...), apply to every endpoint.
    """
    return _factory(endpoints, OrchestrationMode.SEQUENTIAL, headers, method, options)


def create_parallel_aggregator(
    endpoints: Sequence[tuple[str, str]],
    max_concurrent: int = 10,
    timeout: float = 30.0,
    *,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    **options: Any,
) -> APIOrchestrator:
    """An orchestrator that calls ``(name, url)`` pairs concurrently and returns
    ``{name: result}``; `timeout` is each call's timeout in seconds."""
    options = {"timeout": timeout, "max_concurrent": max_concurrent, **options}
    return _factory(endpoints, OrchestrationMode.PARALLEL, headers, method, options)


def _factory(
    pairs: Sequence[tuple[str, str]],
    mode: OrchestrationMode,
    headers: dict[str, str] | None,
    method: str,
    options: dict[str, Any],
) -> APIOrchestrator:
    endpoint_fields = set(APIEndpoint.__dataclass_fields__) - {"name", "url"}
    config_fields = set(APIOrchestrationConfig.__dataclass_fields__) - {"endpoints", "mode"}
    per_endpoint = {k: v for k, v in options.items() if k in endpoint_fields}
    run_options = {k: v for k, v in options.items() if k in config_fields}
    unknown = set(options) - set(per_endpoint) - set(run_options)
    if unknown:
        raise ConfigError(f"unknown option(s) {sorted(unknown)}")
    endpoints = [
        APIEndpoint(name=name, url=url, method=method, headers=dict(headers or {}), **per_endpoint)
        for name, url in pairs
    ]
    return APIOrchestrator(APIOrchestrationConfig(endpoints=endpoints, mode=mode, **run_options))

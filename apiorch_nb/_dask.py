"""`map` over a Dask cluster: the rows go to the workers in chunks, each runs this engine.

Every task rebuilds the orchestrator from its config and the backend URLs it was made
with (``limiter="redis://..."`` and friends), runs ``map`` over its chunk on a fresh event
loop in the worker's thread, and sends back only each row's field values, status and
error. Rate limits hold across the cluster only through a shared limiter, so a map with
limits and an in-process limiter is refused rather than silently multiplying the limit by
the number of workers. ``max_concurrent`` is shared out among the cluster's threads, so
the whole cluster never has more calls in flight than it says.

The kernel's loop never blocks on Dask: completion arrives through future callbacks
(from Dask's own thread, handed over with ``call_soon_threadsafe``). A chunk that has not
come back when the map is interrupted or times out is cancelled on the cluster and its
rows are recorded as ``cancelled``; everything that came back is kept.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._map import drive
from ._rows import is_dask_frame, plain, table_rows
from .backends import url_scheme
from .enrich import FieldsSpec, MapRun, compile_fields
from .errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from .config import APIOrchestrationConfig
    from .orchestrator import APIOrchestrator

#: Chunks per cluster thread: enough that a slow chunk does not leave threads idle at the
#: end, few enough that per-task overhead (an orchestrator and a loop each) stays small.
CHUNKS_PER_THREAD = 4
#: Workers of the cluster ``client="local"`` starts (one thread each).
LOCAL_WORKERS = min(4, os.cpu_count() or 1)

RowResult = tuple[str, "str | None", list[Any]]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to rebuild the orchestrator; pickled with the task."""

    config: APIOrchestrationConfig
    backend_urls: Mapping[str, str]
    secrets: Mapping[str, str]
    fields: FieldsSpec
    max_concurrent: int


def run_chunk(
    spec: WorkerSpec, rows: Sequence[Mapping[str, Any]] | pd.DataFrame
) -> list[RowResult]:
    """On a worker: map `rows` (dicts, or a partition) on a fresh loop; return (status,
    error, values) per row."""
    from .orchestrator import APIOrchestrator

    async def go() -> list[RowResult]:
        orchestrator = APIOrchestrator(spec.config, **spec.backend_urls, secrets=spec.secrets)
        async with orchestrator:
            await orchestrator.map(
                rows, fields=spec.fields, max_concurrent=spec.max_concurrent, observer=None
            )
        mrun = orchestrator.last_map
        assert mrun is not None
        pending = ("pending", None, [None] * len(mrun.fields))
        return [(o.status, o.error, o.values) if o else pending for o in mrun.outcomes]

    return asyncio.run(go())


def run_partition(spec: WorkerSpec, part: pd.DataFrame) -> list[RowResult]:
    """On a worker: `run_chunk` over one partition of a Dask DataFrame."""
    return run_chunk(spec, part)


async def map_on_dask(
    orchestrator: APIOrchestrator,
    rows: Any,
    *,
    client: Any,
    fields: FieldsSpec,
    max_concurrent: int,
    timeout: float | None,
    observer: Any,
) -> pd.DataFrame:
    """`APIOrchestrator.map` with a Dask `client` (or ``"local"``) or a Dask DataFrame.

    Raises:
        ConfigError: limits that would not hold across workers, or a client that is not one.
        MapTimeout: `timeout` passed; ``.map_run`` holds every row.
    """
    _check_shareable(orchestrator)
    names = [ep.name for ep in orchestrator.config.endpoints]
    compiled = compile_fields(fields, names)  # refuse bad fields here, not on every worker
    cluster = None
    if client == "local":
        client, cluster = await asyncio.to_thread(_local_client)
    elif not callable(getattr(client, "submit", None)):
        raise ConfigError(
            f"map: client must be a dask.distributed Client or 'local', got {client!r}"
        )
    try:
        threads = max(1, sum(client.nthreads().values()))
        spec = WorkerSpec(
            orchestrator.config,
            dict(orchestrator.backend_urls),
            dict(orchestrator._services.secrets),
            fields,
            max(1, max_concurrent // threads),
        )
        if is_dask_frame(rows):
            mrun, chunks = await asyncio.to_thread(_frame_chunks, rows, compiled)
        else:
            index, inputs, index_names = table_rows(rows)
            mrun = MapRun(index, inputs, compiled, index_names=index_names)
            chunks = _list_chunks(len(inputs), threads * CHUNKS_PER_THREAD)
        mrun.secret_values = tuple(spec.secrets.values())
        orchestrator.last_map = mrun
        return await drive(
            mrun, lambda on_row: _gather(client, spec, mrun, chunks, on_row), timeout, observer
        )
    finally:
        if cluster is not None:
            await asyncio.to_thread(_close, client, cluster)


async def _gather(
    client: Any,
    spec: WorkerSpec,
    mrun: MapRun,
    chunks: list[tuple[int, int, Any]],
    on_row: Callable[[int], None] | None,
) -> None:
    """Submit every chunk, file each as it comes back; on cancel, cancel what is left."""
    loop = asyncio.get_running_loop()
    futures = []
    for start, stop, part in chunks:
        if part is None:
            future = client.submit(run_chunk, spec, mrun.inputs[start:stop], pure=False)
        else:
            future = client.compute(_delayed(run_partition)(spec, part))
        futures.append(future)
    waiters = [_arrival(loop, f, i) for i, f in enumerate(futures)]
    pending = set(range(len(futures)))
    try:
        for arrived in asyncio.as_completed(waiters):
            i = await arrived
            pending.discard(i)
            start, stop, _ = chunks[i]
            results = await asyncio.to_thread(futures[i].result)
            for offset, (status, error, values) in enumerate(results):
                mrun.record(start + offset, status, error, values)
                if on_row is not None:
                    on_row(start + offset)
    except BaseException:
        client.cancel([futures[i] for i in pending])
        for i in pending:
            start, stop, _ = chunks[i]
            for position in range(start, stop):
                mrun.record(position, "cancelled", "its Dask task did not come back")
        raise


def _arrival(loop: asyncio.AbstractEventLoop, future: Any, index: int) -> asyncio.Future[int]:
    """An asyncio future resolved with `index` when the Dask future finishes; Dask calls
    back from its own thread, so the result is handed to the loop thread-safely."""
    done: asyncio.Future[int] = loop.create_future()
    future.add_done_callback(lambda _: loop.call_soon_threadsafe(_settle, done, index))
    return done


def _settle(done: asyncio.Future[int], index: int) -> None:
    if not done.done():
        done.set_result(index)


def _list_chunks(n: int, count: int) -> list[tuple[int, int, Any]]:
    size = max(1, math.ceil(n / max(1, count)))
    return [(start, min(n, start + size), None) for start in range(0, n, size)]


def _frame_chunks(
    ddf: Any, compiled: list[tuple[str, Callable[..., Any]]]
) -> tuple[MapRun, list[tuple[int, int, Any]]]:
    """The record for a Dask DataFrame (its index is computed; rows stay on the cluster)
    and one chunk per partition."""
    import dask

    index, lengths = dask.compute(ddf.index, ddf.map_partitions(len))  # one pass over the data
    labels = [plain(v) if not isinstance(v, tuple) else v for v in index]
    mrun = MapRun(labels, [{}] * len(labels), compiled, index_names=list(index.names))
    chunks, start = [], 0
    for length, part in zip(lengths, ddf.to_delayed(), strict=True):
        chunks.append((start, start + int(length), part))
        start += int(length)
    return mrun, chunks


def _delayed(func: Callable[..., Any]) -> Callable[..., Any]:
    import dask

    return dask.delayed(func, pure=False)  # type: ignore[no-any-return]


def _check_shareable(orchestrator: APIOrchestrator) -> None:
    """Refuse limits that each worker would enforce on its own."""
    cfg = orchestrator.config
    limited = [ep.name for ep in cfg.endpoints if ep.rate_limit or ep.burst_limit]
    if cfg.global_rate_limit:
        limited.append("global_rate_limit")
    shared = url_scheme(orchestrator.backend_urls.get("limiter", ""), "limiter") != "memory"
    if limited and not shared:
        raise ConfigError(
            f"map over Dask: {', '.join(limited)} would be limited per worker, not in total; "
            "share the limit with APIOrchestrator(config, limiter='redis://host:6379/0')"
        )


def _local_client() -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=LOCAL_WORKERS,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        # No dashboard; its HTTP server (health, metrics) on a free loopback port, not on
        # 8787, which another cluster (or a second map) may hold.
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )
    return Client(cluster), cluster


def _close(client: Any, cluster: Any) -> None:
    client.close()
    cluster.close()

"""Builds the connector's parts from settings: the one place a sync or a search is wired.

The CLI, the dashboard's child syncs and every benchmark call :func:`build_syncer` and
:func:`build_searcher`, so that what they measure is what users run.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connector.dense import load_dense_encoders
from connector.errors import ConfigError
from connector.gpu import GIB, BatchPolicy, DeviceExecutor, LeasePool
from connector.sparse import sparse_model
from connector.sparse.generator import ModelRegistry, SparseVectorGenerator
from connector.sparse.target import SparseTarget
from connector.store import CollectionLayout, Store, Writer, make_client

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from connector.dense import DenseEncoder
    from connector.pipeline.progress import Progress
    from connector.pipeline.stages import DenseStage
    from connector.pipeline.syncer import Syncer
    from connector.runs.manifest import DeviceUsage
    from connector.runs.record import RunRecord
    from connector.search import Searcher
    from connector.settings import GpuSettings, Settings
    from connector.sources import Source
    from connector.store.edge import EdgeClient
    from connector.telemetry import Telemetry

__all__ = [
    "SyncJob",
    "build_searcher",
    "build_syncer",
    "chunk_writer",
    "collection_layout",
    "dense_encoders",
    "dense_stage",
    "device_executor",
    "device_usage",
    "open_store",
    "sparse_target",
]

log = logging.getLogger(__name__)


@dataclass
class SyncJob(AbstractContextManager["SyncJob"]):
    """A sync wired from settings: its source, store, writer, syncer and GPU executor. Run it once
    or more; close it (or use it as a context manager) to release the store.

    Attributes:
        settings: What it was built from.
        source: What it reads.
        store: The Qdrant it writes to (and records its runs in).
        writer: The writer of its collection (the syncer's).
        syncer: The syncer; ``syncer.record`` is the last run's record, also after a failure.
        executor: Where its models run (GPU leases, usage for the manifest).
        record: Whether each run is recorded (manifest file, runs collection, progress.json).
    """

    settings: Settings
    source: Source
    store: Store
    writer: Writer
    syncer: Syncer
    executor: DeviceExecutor
    record: bool = True

    def run(self) -> RunRecord:
        """Bring a missing collection to the latest schema (refuse one that is behind), then
        sync the source, recorded as a run, holding the source's sync lease (which lives in the
        runs collection: a run not recorded takes none).

        Raises:
            SchemaOutdated: The collection exists and its schema is behind.
            SyncInProgress: Another run (of any host) holds the lease on syncing this source
                into this collection.
            ConnectorError: The run failed (see :meth:`Syncer.run`); it is recorded as such.
        """
        from connector.store.migrator import Migrator

        settings = self.settings
        runs_collection = settings.qdrant.runs_collection
        layout = collection_layout(settings, self.syncer.dense)
        Migrator(self.store, self.writer.collection, layout, runs_collection).prepare_for_sync()
        # The executor gives back a GPU leased during the run when it ends, however it ends.
        if not self.record:
            with self.executor, self.syncer.dense_stage:
                return self.syncer.run(self.source)
        from connector.runs import RunRecorder, RunStore, SyncLease, config_digest

        runs = RunStore(self.store, runs_collection)
        recorder = RunRecorder(
            self.syncer,
            self.source.name,
            settings.state_dir,
            runs,
            config_digest=config_digest(settings),
            devices=lambda: device_usage(self.syncer.dense_stage.executors, settings.gpu),
        )
        lease = SyncLease(
            runs,
            self.writer.collection,
            self.source.name,
            recorder.run_id,
            ttl_s=settings.sync.lease_ttl_s,
            # No other process can write an embedded store meanwhile: its folder is locked.
            settle_s=settings.sync.lease_settle_s if settings.qdrant.url is not None else 0.0,
        )
        # A run that finds the source's lease held is no run: it fails before it is recorded.
        with lease, recorder, _sigterm_stops(), self.executor, self.syncer.dense_stage:
            self.syncer.guard = lease.check
            try:
                return self.syncer.run(self.source, run_id=recorder.run_id)
            finally:
                self.syncer.guard = None

    def close(self) -> None:
        """Give back a GPU still leased, stop the writer (nothing queued is dropped) and close
        the store."""
        try:
            self.syncer.dense_stage.close()
            self.executor.close()
        finally:
            try:
                self.writer.close()
            finally:
                self.store.close()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def build_syncer(
    settings: Settings,
    *,
    source: Source | None = None,
    dense: Sequence[DenseEncoder] | None = None,
    client: QdrantClient | EdgeClient | None = None,
    collection: str | None = None,
    sparse: bool | None = None,
    telemetry: Telemetry | None = None,
    progress: Progress | None = None,
    holder: str = "connector",
    record: bool = True,
) -> SyncJob:
    """A sync of the configured source into the configured collection, as ``connector sync``
    runs it.

    Args:
        settings: Everything configurable.
        source: What to read; default: ``source.path`` of the settings.
        dense: The dense ensemble; default: the configured models (loaded on first use).
        client: The Qdrant client; default: the configured server or embedded engine.
        collection: The collection; default: ``qdrant.collection``.
        sparse: Sparse on or off for this run; default: the persisted switch, else the settings.
        telemetry: Where spans and metrics go: those of the store, the syncer, the dense stage,
            the sparse generator and the GPU executor alike.
        progress: Told how far the run is (a terminal bar, say).
        holder: Names this process in GPU lease records.
        record: Record each run (manifest, runs collection, progress.json).

    Raises:
        ConfigError: No source is configured, or a setting is unusable.
        SinkError: The store cannot be opened (the embedded folder is held by another process).
        SourceError: With ``avg_len = "auto"``, the source failed while being measured.
    """
    from connector.chunking import chunker_for
    from connector.pipeline import NULL_PROGRESS, Syncer
    from connector.sources import open_source
    from connector.sparse.avglen import resolve_avg_len
    from connector.switches import sparse_enabled

    if settings.compute.engine == "ray":
        from connector.compute import import_ray

        import_ray()  # without Ray installed, fail before anything opens
    if source is None:
        src = settings.source
        if not src.path:
            raise ConfigError("source.path: no source given (use --source PATH_OR_URL)")
        source = open_source(
            src.path,
            name=src.name,
            chunker=chunker_for(settings),
            split_records=settings.chunking.split_records,
            timeout_s=src.timeout_s,
            retries=src.retries,
            strict=settings.sync.strict,
            max_line_bytes=src.max_line_bytes,
            id_field=src.id_field,
            text_field=src.text_field,
            metadata_fields=src.metadata_fields,
            workers=settings.sync.workers,
        )
    encoders = list(dense) if dense is not None else dense_encoders(settings)
    executor = device_executor(settings, holder=holder, telemetry=telemetry)
    enabled, _ = sparse_enabled(settings.state_dir, settings.sparse.enabled, sparse)
    store = open_store(settings, telemetry=telemetry, client=client)
    writer = chunk_writer(settings, store, collection)
    try:
        avg_len = resolve_avg_len(settings, store, writer.collection, source) if enabled else None
        target = (
            sparse_target(settings, executor, avg_len=avg_len, telemetry=telemetry)
            if enabled
            else None
        )
    except BaseException:
        store.close()
        raise
    sync = settings.sync
    compute = None
    if settings.compute.engine == "ray":
        from connector.compute import RayCompute
        from connector.pipeline._workers import runs_in_workers

        compute = RayCompute(
            settings,
            sparse=target is not None,
            sparse_on_gpu=target is not None and not runs_in_workers(target),
            avg_len=avg_len,
        )
    syncer = Syncer(
        writer,
        encoders,
        target,
        batch_size=sync.batch_size,
        strict=sync.strict,
        max_delete_fraction=sync.max_delete_fraction,
        allow_mass_delete=sync.allow_mass_delete,
        workers=sync.workers,
        progress=progress or NULL_PROGRESS,
        telemetry=telemetry,
        dense_stage=dense_stage(settings, executor, telemetry=telemetry),
        compute=compute,
    )
    return SyncJob(settings, source, store, writer, syncer, executor, record=record)


@contextmanager
def build_searcher(
    settings: Settings,
    *,
    dense: Sequence[DenseEncoder] | None = None,
    client: QdrantClient | EdgeClient | None = None,
    collection: str | None = None,
) -> Iterator[Searcher]:
    """A searcher of the configured collection with the models its vectors were made with; the
    store is closed when the block ends."""
    from connector.search import Searcher
    from connector.sparse.avglen import resolve_avg_len

    s = settings.search
    name = collection or settings.qdrant.collection
    store = open_store(settings, client=client)
    try:
        yield Searcher(
            store,
            name,
            list(dense) if dense is not None else dense_encoders(settings),
            sparse_target(settings, avg_len=resolve_avg_len(settings, store, name)),
            candidates=s.candidates,
            fusion=s.fusion,
            feedback_docs=s.feedback_docs,
            feedback_weight=s.feedback_weight,
        )
    finally:
        store.close()


@contextmanager
def _sigterm_stops() -> Iterator[None]:
    """Let SIGTERM unwind the run (so it is recorded ``interrupted``) instead of killing it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def open_store(
    settings: Settings,
    telemetry: Telemetry | None = None,
    client: QdrantClient | EdgeClient | None = None,
) -> Store:
    """The embedded Qdrant or the configured server (or ``client``), with the configured retries,
    index (edge engine and server) and cluster options (a server).

    Raises:
        SinkError: The embedded folder is held by another process.
        ConfigError: ``qdrant.engine`` is left to its default (edge) and the folder holds a store
            of the local engine not copied yet (``connector migrate --engine edge``).
    """
    if client is None:
        client = make_client(settings)
        _refuse_uncopied_local_store(settings, client)
    return Store(
        client,
        retries=settings.qdrant.retries,
        telemetry=telemetry,
        index=settings.qdrant.index if settings.qdrant.indexed else None,
        cluster=settings.qdrant.cluster if settings.qdrant.url is not None else None,
    )


def _refuse_uncopied_local_store(settings: Settings, client: QdrantClient | EdgeClient) -> None:
    """A folder written by the local engine reads as empty on the edge engine: when edge is only
    the default, refuse (nothing stored may silently change meaning); when it was chosen, say so.

    Raises:
        ConfigError: ``qdrant.engine`` was left to its default (edge) and the folder holds
            collections of the local engine that the edge store lacks.
    """
    from connector.store import local_collections_left
    from connector.store.edge import EdgeClient

    if not isinstance(client, EdgeClient):
        return
    path = settings.qdrant_path
    left = local_collections_left(path, client)
    if not left:
        return
    what = f"{path} holds a store of the local engine ({', '.join(left)}) that the edge store lacks"
    if "engine" in settings.qdrant.model_fields_set:
        log.warning("%s: `connector migrate --engine edge` copies it", what)
        return
    client.close()
    raise ConfigError(
        f'{what}, and qdrant.engine now defaults to "edge": run `connector migrate --engine '
        f'edge` to copy it, or set qdrant.engine = "local" to keep using it'
    )


def chunk_writer(settings: Settings, store: Store, collection: str | None = None) -> Writer:
    """The writer of ``collection`` (default: ``qdrant.collection``) with the configured write
    batches and queue."""
    q = settings.qdrant
    return Writer(
        store,
        collection or q.collection,
        batch_size=q.upsert_batch_size,
        queue_size=q.write_queue,
        runs_collection=q.runs_collection,
    )


def dense_encoders(settings: Settings) -> list[DenseEncoder]:
    """The configured dense ensemble: plug-ins built now, models loaded on the CPU on first use."""
    return load_dense_encoders(
        settings.dense.models, device="cpu", precision=settings.dense.precision
    )


def device_executor(
    settings: Settings, holder: str = "connector", *, telemetry: Telemetry | None = None
) -> DeviceExecutor:
    """Runs models on GPUs leased under ``state_dir`` (when ``gpu.enabled``), else the CPU.

    Args:
        settings: The ``gpu`` section and ``state_dir``.
        holder: Names this process in the lease records (``connector sync``).
        telemetry: Receives its events (leases, batch sizes, OOMs); default: the global
            providers.
    """
    gpu = settings.gpu
    hard_cap = int(gpu.vram_hard_cap_gb * GIB)
    pool = None
    if gpu.enabled:
        pool = LeasePool(
            settings.state_dir,
            timeout_s=gpu.lease_timeout_s,
            holder=holder,
        )
    policy = BatchPolicy(
        hard_cap_bytes=hard_cap,
        soft_limit_bytes=int(gpu.vram_soft_limit_gb * GIB),
        min_batch=gpu.min_batch_size,
    )
    return DeviceExecutor(pool, policy, telemetry=telemetry, idle_release_s=gpu.idle_release_s)


def dense_stage(
    settings: Settings,
    executor: DeviceExecutor | None = None,
    *,
    telemetry: Telemetry | None = None,
) -> DenseStage:
    """The dense step of a sync, on ``executor`` (default: one built from ``settings``).

    Args:
        settings: The ``gpu`` section.
        executor: Where the models run.
        telemetry: Where its ``dense_model`` spans go; default: the global providers.
    """
    from connector.pipeline.stages import DenseStage  # a search imports no sync pipeline

    gpu = settings.gpu
    return DenseStage(
        executor or device_executor(settings, telemetry=telemetry),
        use_gpu=gpu.enabled,
        device_ids=gpu.device_ids,
        telemetry=telemetry,
    )


def sparse_target(
    settings: Settings,
    executor: DeviceExecutor | None = None,
    *,
    avg_len: float | None = None,
    telemetry: Telemetry | None = None,
) -> SparseTarget:
    """The configured sparse model and its vector (whether sync uses it is the switch's call).

    Args:
        settings: The ``sparse`` and ``gpu`` sections.
        executor: Where the model runs (default: the CPU only, enough for queries).
        avg_len: BM25's ``avg_len`` when the setting is ``"auto"`` (see
            :func:`connector.sparse.avglen.resolve_avg_len`).
        telemetry: Where the generator's ``sparse_inference`` spans and metrics go; default: the
            global providers.

    Raises:
        ConfigError: ``avg_len`` is ``"auto"`` and no value was given.
    """
    sparse, gpu = settings.sparse, settings.gpu
    model = sparse_model(sparse.model)
    described = model.description
    options = model.options(sparse, avg_len=avg_len)
    registry = ModelRegistry({described.options_key: options})
    return SparseTarget(
        generator=SparseVectorGenerator(registry, executor, telemetry=telemetry),
        model_name=described.name,
        vector_name=sparse.vector_name or described.name,
        idf=described.idf,
        use_gpu=gpu.enabled,
        device_ids=tuple(gpu.device_ids) if gpu.device_ids is not None else None,
        options=model.recorded_options(sparse, options),
    )


def collection_layout(settings: Settings, dense: Sequence[DenseEncoder]) -> CollectionLayout:
    """The vectors the configured models need, sparse included even while it is switched off
    (the schema keeps its place; migrations create it)."""
    described = sparse_model(settings.sparse.model).description
    return CollectionLayout(
        dense={e.name: e.dim for e in dense},
        sparse={settings.sparse.vector_name or described.name: described.idf},
    )


def device_usage(
    executor: DeviceExecutor | Sequence[DeviceExecutor], gpu: GpuSettings
) -> list[DeviceUsage]:
    """The GPUs ``executor`` (or each of several) ran on so far, with peak VRAM against the
    caps (for the manifest)."""
    from connector.runs.manifest import DeviceUsage

    mib = 1024 * 1024
    peaks: dict[str, int] = {}
    hits: dict[str, int] = {}
    for one in [executor] if isinstance(executor, DeviceExecutor) else executor:
        # Two executors of a run may have held the same GPU in turn.
        for device, tally in one.usage.items():
            peaks[device] = max(peaks.get(device, 0), tally.peak_bytes)
            hits[device] = hits.get(device, 0) + tally.soft_limit_hits
    return [
        DeviceUsage(
            device=device,
            peak_vram_mb=round(peak / mib, 1),
            vram_hard_cap_mb=round(gpu.vram_hard_cap_gb * GIB / mib, 1),
            vram_soft_limit_mb=round(gpu.vram_soft_limit_gb * GIB / mib, 1),
            soft_limit_exceedances=hits[device],
        )
        for device, peak in sorted(peaks.items())
    ]

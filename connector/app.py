"""Builds the connector's parts from settings; the CLI and the dashboard share it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connector.dense import load_dense_encoders
from connector.errors import ConfigError
from connector.gpu import GIB, BatchPolicy, DeviceExecutor, LeasePool
from connector.manifest import DeviceUsage
from connector.runner import SparseTarget
from connector.sink import CollectionLayout, QdrantSink, make_client
from connector.sparse import model_spec
from connector.sparse.generator import ModelRegistry, SparseVectorGenerator
from connector.stages import DenseStage

if TYPE_CHECKING:
    from collections.abc import Sequence

    from connector.dense import DenseEncoder, SentenceTransformerEncoder
    from connector.settings import GpuSettings, Settings
    from connector.telemetry import Telemetry

__all__ = [
    "collection_layout",
    "dense_encoders",
    "dense_stage",
    "device_executor",
    "device_usage",
    "open_sink",
    "sparse_target",
]


def open_sink(
    settings: Settings, collection: str | None = None, telemetry: Telemetry | None = None
) -> QdrantSink:
    """The collection's sink, on the embedded Qdrant or the configured server."""
    q = settings.qdrant
    return QdrantSink(
        make_client(settings),
        collection or q.collection,
        batch_size=q.upsert_batch_size,
        queue_size=q.write_queue,
        retries=q.retries,
        telemetry=telemetry,
    )


def dense_encoders(settings: Settings) -> list[SentenceTransformerEncoder]:
    """The configured dense ensemble (models load on the CPU, on first use)."""
    return load_dense_encoders(settings.dense.models, device="cpu")


def device_executor(settings: Settings, holder: str = "connector") -> DeviceExecutor:
    """Runs models on GPUs leased under ``state_dir`` (when ``gpu.enabled``), else the CPU.

    Args:
        settings: The ``gpu`` section and ``state_dir``.
        holder: Names this process in the lease records (``connector sync``).
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
    return DeviceExecutor(pool, policy)


def dense_stage(settings: Settings, executor: DeviceExecutor | None = None) -> DenseStage:
    """The dense step of a sync, on ``executor`` (default: one built from ``settings``)."""
    gpu = settings.gpu
    return DenseStage(
        executor or device_executor(settings),
        use_gpu=gpu.enabled,
        device_ids=gpu.device_ids,
    )


def sparse_target(
    settings: Settings,
    executor: DeviceExecutor | None = None,
    *,
    avg_len: float | None = None,
) -> SparseTarget:
    """The configured sparse model and its vector (whether sync uses it is the switch's call).

    Args:
        settings: The ``sparse`` and ``gpu`` sections.
        executor: Where the model runs (default: the CPU only, enough for queries).
        avg_len: BM25's ``avg_len`` when the setting is ``"auto"`` (see
            :func:`connector.avglen.resolve_avg_len`).

    Raises:
        ConfigError: ``avg_len`` is ``"auto"`` and no value was given.
    """
    sparse, gpu = settings.sparse, settings.gpu
    spec = model_spec(sparse.model)
    options = sparse.model_options()
    recorded: dict[str, Any] = {}
    if spec.kind == "bm25":
        if sparse.bm25.avg_len == "auto":
            if avg_len is None:
                raise ConfigError("sparse.bm25.avg_len: 'auto' was not resolved to a number")
            options["bm25"] = options["bm25"] | {"avg_len": avg_len}
        recorded = dict(options["bm25"]) | {"avg_len_auto": sparse.bm25.avg_len == "auto"}
    return SparseTarget(
        generator=SparseVectorGenerator(ModelRegistry(options), executor),
        model_name=spec.name,
        vector_name=sparse.vector_name or spec.name,
        idf=spec.idf,
        use_gpu=gpu.enabled,
        device_ids=tuple(gpu.device_ids) if gpu.device_ids is not None else None,
        options=recorded,
    )


def collection_layout(settings: Settings, dense: Sequence[DenseEncoder]) -> CollectionLayout:
    """The vectors the configured models need, sparse included even while it is switched off
    (the schema keeps its place; migrations create it)."""
    spec = model_spec(settings.sparse.model)
    return CollectionLayout(
        dense={e.name: e.dim for e in dense},
        sparse={settings.sparse.vector_name or spec.name: spec.idf},
    )


def device_usage(executor: DeviceExecutor, gpu: GpuSettings) -> list[DeviceUsage]:
    """The GPUs ``executor`` ran on so far, with peak VRAM against the caps (for the manifest)."""
    mib = 1024 * 1024
    return [
        DeviceUsage(
            device=device,
            peak_vram_mb=round(tally.peak_bytes / mib, 1),
            vram_hard_cap_mb=round(gpu.vram_hard_cap_gb * GIB / mib, 1),
            vram_soft_limit_mb=round(gpu.vram_soft_limit_gb * GIB / mib, 1),
            soft_limit_exceedances=tally.soft_limit_hits,
        )
        for device, tally in sorted(executor.usage.items())
    ]

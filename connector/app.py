"""Builds the connector's parts from settings; the CLI and the dashboard share it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connector.dense import load_dense_encoders
from connector.errors import ConfigError
from connector.runner import SparseTarget
from connector.sink import QdrantSink, make_client
from connector.sparse import model_spec
from connector.sparse.generator import ModelRegistry, SparseVectorGenerator

if TYPE_CHECKING:
    from connector.dense import SentenceTransformerEncoder
    from connector.settings import Settings

__all__ = ["dense_encoders", "open_sink", "sparse_target"]


def open_sink(settings: Settings, collection: str | None = None) -> QdrantSink:
    """The collection's sink, on the embedded Qdrant or the configured server."""
    q = settings.qdrant
    return QdrantSink(
        make_client(settings),
        collection or q.collection,
        batch_size=q.upsert_batch_size,
        queue_size=q.write_queue,
        retries=q.retries,
    )


def dense_encoders(settings: Settings) -> list[SentenceTransformerEncoder]:
    """The configured dense ensemble (models load on first use)."""
    device = settings.dense.device
    return load_dense_encoders(settings.dense.models, device=None if device == "auto" else device)


def sparse_target(settings: Settings, *, avg_len: float | None = None) -> SparseTarget:
    """The configured sparse model and its vector (whether sync uses it is the switch's call).

    Args:
        settings: The settings.
        avg_len: BM25's ``avg_len`` when the setting is ``"auto"`` (see
            :func:`connector.avglen.resolve_avg_len`).

    Raises:
        ConfigError: ``avg_len`` is ``"auto"`` and no value was given.
    """
    sparse = settings.sparse
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
        generator=SparseVectorGenerator(ModelRegistry(options)),
        model_name=spec.name,
        vector_name=sparse.vector_name or spec.name,
        idf=spec.idf,
        use_gpu=sparse.use_gpu,
        device_ids=tuple(sparse.device_ids) if sparse.device_ids is not None else None,
        options=recorded,
    )

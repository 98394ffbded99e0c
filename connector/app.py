"""Builds the connector's parts from settings; the CLI and the dashboard share it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connector.dense import load_dense_encoders
from connector.runner import SparseTarget
from connector.sink import CollectionLayout, QdrantSink, make_client
from connector.sparse import generator_from_settings, model_spec

if TYPE_CHECKING:
    from collections.abc import Sequence

    from connector.dense import DenseEncoder, SentenceTransformerEncoder
    from connector.settings import Settings
    from connector.telemetry import Telemetry

__all__ = ["collection_layout", "dense_encoders", "open_sink", "sparse_target"]


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
    """The configured dense ensemble (models load on first use)."""
    device = settings.dense.device
    return load_dense_encoders(settings.dense.models, device=None if device == "auto" else device)


def sparse_target(settings: Settings) -> SparseTarget:
    """The configured sparse model and its vector (whether sync uses it is the switch's call)."""
    sparse = settings.sparse
    spec = model_spec(sparse.model)
    return SparseTarget(
        generator=generator_from_settings(sparse),
        model_name=spec.name,
        vector_name=sparse.vector_name or spec.name,
        idf=spec.idf,
        use_gpu=sparse.use_gpu,
        device_ids=tuple(sparse.device_ids) if sparse.device_ids is not None else None,
    )


def collection_layout(settings: Settings, dense: Sequence[DenseEncoder]) -> CollectionLayout:
    """The vectors the configured models need, sparse included even while it is switched off
    (the schema keeps its place; migrations create it)."""
    spec = model_spec(settings.sparse.model)
    return CollectionLayout(
        dense={e.name: e.dim for e in dense},
        sparse={settings.sparse.vector_name or spec.name: spec.idf},
    )

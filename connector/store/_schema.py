"""What the connector's collections look like: how they are created, checked and extended.

A chunk collection is created in one place, :func:`create_chunk_collection`: by a first sync and
by migration 0001 (through :func:`create_aliased_chunk_collection`, as ``<name>__1`` behind the
alias ``<name>``), and by a rebuild (as ``<name>__N+1``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qdrant_client import models as qm

from connector.errors import CollectionMismatch

if TYPE_CHECKING:
    from connector.store._gateway import Store

__all__ = [
    "CHUNK_INDEXES",
    "CollectionLayout",
    "create_aliased_chunk_collection",
    "create_chunk_collection",
    "create_runs_collection",
    "dense_params",
    "fit_collection",
    "size_changes",
    "sparse_params",
    "sparse_vector_config",
]

log = logging.getLogger(__name__)

CHUNK_INDEXES = ("source", "content_hash", "chunk_id")
"""Payload keys of chunk points that carry a keyword index."""
_RUN_INDEXES = {
    "run.status": qm.PayloadSchemaType.KEYWORD,
    # `connector runs` lists newest first: a server orders by an indexed key only.
    "run.started_at": qm.PayloadSchemaType.DATETIME,
}


@dataclass(frozen=True, slots=True)
class CollectionLayout:
    """The vectors a collection must have for the configured models."""

    dense: dict[str, int]
    """Dense vector name → size."""
    sparse: dict[str, bool] = field(default_factory=dict)
    """Sparse vector name → whether it needs the IDF modifier."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Recorded in the collection's metadata (models, signatures), merged on each run."""


def dense_params(size: int) -> qm.VectorParams:
    """A dense vector of ``size`` as the connector makes them (cosine distance)."""
    return qm.VectorParams(size=size, distance=qm.Distance.COSINE)


def sparse_params(idf: bool) -> qm.SparseVectorParams:
    """A sparse vector, with Qdrant's IDF modifier or without."""
    return qm.SparseVectorParams(modifier=qm.Modifier.IDF if idf else None)


def create_chunk_collection(
    store: Store,
    name: str,
    dense: Mapping[str, qm.VectorParams],
    sparse: Mapping[str, qm.SparseVectorParams],
    *,
    metadata: Mapping[str, Any] | None = None,
    indexes: Mapping[str, qm.PayloadSchemaType] | None = None,
) -> None:
    """Create chunk collection ``name``: its named vectors and its payload indexes.

    Args:
        store: Where.
        name: The collection (not an alias).
        dense: Dense vector name → its parameters.
        sparse: Sparse vector name → its parameters.
        metadata: Recorded on the collection.
        indexes: Payload indexes beyond the keyword indexes of :data:`CHUNK_INDEXES` (a rebuild
            keeps those of the collection it replaces).
    """
    store.create_collection(name, dense, sparse, metadata)
    wanted = dict(indexes or {})
    for key in CHUNK_INDEXES:
        wanted.setdefault(key, qm.PayloadSchemaType.KEYWORD)
    for key, schema in wanted.items():
        store.create_index(name, key, schema)
    log.info("created collection %s", name)


def create_aliased_chunk_collection(store: Store, alias: str, layout: CollectionLayout) -> str:
    """Create ``<alias>__1`` with ``layout``'s vectors behind the alias ``alias``; returns the
    collection's name."""
    physical = f"{alias}__1"
    create_chunk_collection(
        store,
        physical,
        {vector: dense_params(size) for vector, size in layout.dense.items()},
        {vector: sparse_params(idf) for vector, idf in layout.sparse.items()},
        metadata=layout.metadata,
    )
    store.set_alias(alias, physical)
    log.info("collection %s is behind alias %s", physical, alias)
    return physical


def create_runs_collection(store: Store, name: str) -> None:
    """Create the runs collection (no vectors) with its payload indexes, if missing."""
    if store.exists(name):
        return
    store.create_collection(name, {})
    for key, schema in _RUN_INDEXES.items():
        store.create_index(name, key, schema)
    log.info("created collection %s", name)


def fit_collection(store: Store, name: str, layout: CollectionLayout) -> None:
    """Check collection ``name`` against ``layout``, add the vectors it lacks, and record the
    layout's metadata on it.

    Raises:
        CollectionMismatch: A vector exists with another size or kind.
    """
    info = store.info(name)
    dense = info.config.params.vectors or {}
    if not isinstance(dense, dict):
        raise CollectionMismatch(
            f"collection {name!r} has one unnamed vector; the connector needs named vectors "
            "(use another collection)"
        )
    sparse = info.config.params.sparse_vectors or {}
    for vector, size in layout.dense.items():
        if vector in sparse:
            raise CollectionMismatch(f"collection {name!r}: {vector!r} is a sparse vector")
        if vector not in dense:
            log.info("adding vector %s to collection %s", vector, name)
            store.add_vector(
                name,
                vector,
                qm.DenseVectorNameConfig(
                    dense=qm.DenseVectorConfig(size=size, distance=qm.Distance.COSINE)
                ),
            )
        elif dense[vector].size != size:
            raise CollectionMismatch(
                f"collection {name!r}: vector {vector!r} has size {dense[vector].size}, the "
                f"model gives {size}; run `connector migrate` to rebuild the collection for "
                "the new model, or use another collection or vector name"
            )
    for vector, idf in layout.sparse.items():
        if vector in dense:
            raise CollectionMismatch(f"collection {name!r}: {vector!r} is a dense vector")
        if vector not in sparse:
            log.info("adding vector %s to collection %s", vector, name)
            store.add_vector(name, vector, sparse_vector_config(idf))
        elif (sparse[vector].modifier == qm.Modifier.IDF) != idf:
            raise CollectionMismatch(
                f"collection {name!r}: sparse vector {vector!r} "
                f"{'lacks' if idf else 'has'} the IDF modifier this model "
                f"{'needs' if idf else 'must not have'}"
            )
    if layout.metadata:
        store.update_metadata(name, layout.metadata)


def sparse_vector_config(idf: bool) -> qm.SparseVectorNameConfig:
    """A sparse vector to add to an existing collection."""
    return qm.SparseVectorNameConfig(
        sparse=qm.SparseVectorConfig(modifier=qm.Modifier.IDF if idf else None)
    )


def size_changes(info: qm.CollectionInfo, layout: CollectionLayout) -> dict[str, tuple[int, int]]:
    """Dense vectors of ``layout`` stored with another size: name → (stored, needed)."""
    stored = info.config.params.vectors
    if not isinstance(stored, Mapping):
        return {}
    return {
        name: (stored[name].size, size)
        for name, size in layout.dense.items()
        if name in stored and stored[name].size != size
    }

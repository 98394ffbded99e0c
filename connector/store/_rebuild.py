"""Rebuilding a chunk collection for a change Qdrant cannot make in place.

A dense vector cannot change size in place. The rebuild creates the next collection
(``<name>__N+1``), copies every point into it (payload, and every vector that did not change) while
re-encoding the changed vectors from the stored text, checks that nothing is missing, then moves the
alias ``<name>`` to it in one request and drops the old collection. Readers of the alias see the old
collection, whole, until the swap, and the new one, whole, after it.

A collection made before aliases (its name is the configured name itself) has to be dropped before
the alias can take its name: for that one-time switch there is a moment when the name answers
nothing. Collections the connector creates are behind an alias from the start.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from qdrant_client import models as qm

from connector.errors import SinkError
from connector.store._schema import create_chunk_collection

if TYPE_CHECKING:
    from connector.dense import DenseEncoder
    from connector.store._gateway import Store
    from connector.store._schema import CollectionLayout

__all__ = ["StepCallback", "rebuild_collection"]

log = logging.getLogger(__name__)

StepCallback = Callable[[str, dict[str, Any]], None]
"""Told ``(step, details)``: ``created``, ``copied`` (per page), ``verified``, ``swapped``,
``dropped``."""


def rebuild_collection(
    store: Store,
    alias: str,
    layout: CollectionLayout,
    encoders: Mapping[str, DenseEncoder],
    *,
    page: int = 256,
    on_step: StepCallback | None = None,
) -> str:
    """Rebuild the collection behind ``alias`` with ``encoders``' vectors re-encoded; returns its
    new name.

    Args:
        store: The Qdrant the collection is on.
        alias: The collection's configured name: the alias (or the legacy collection itself).
        layout: The sizes the configured models need.
        encoders: The dense encoders whose vectors change, by vector name.
        page: Points copied per request.
        on_step: Told about each step.

    Raises:
        SinkError: A point has no text to re-encode, or the collection changed during the copy
            (a sync wrote to it); the alias is left on the old collection and the new one dropped.
    """
    step = on_step or (lambda name, details: None)
    old = store.physical_name(alias)
    aliased = old != alias
    new = _next_name(store, alias, old)
    info = store.info(old)
    total = store.count(old)
    _create_like(store, info, new, layout, encoders)
    step("created", {"collection": new, "total": total})
    try:
        # A bulk load like a first sync's: the graph is built once, before the swap.
        store.defer_index(new)
        copied = _copy(store, old, new, encoders, page, total, step)
        if copied != total or store.count(old) != total or store.count(new) != total:
            raise SinkError(
                f"collection {old!r} changed while it was being rebuilt (a sync running?); "
                "nothing was swapped: run `connector migrate` again when no sync runs"
            )
        store.build_index(new)
        step("verified", {"collection": new, "points": total})
    except BaseException:
        store.drop_collection(new)
        raise
    if aliased:
        store.set_alias(alias, new, replace=True)
        step("swapped", {"alias": alias, "collection": new})
        store.drop_collection(old)
    else:
        log.warning(
            "collection %s predates aliases: it is dropped before the alias takes its name, so "
            "for a moment the name answers nothing (its points are safe in %s)",
            old,
            new,
        )
        store.drop_collection(old)
        store.set_alias(alias, new)
        step("swapped", {"alias": alias, "collection": new})
    step("dropped", {"collection": old})
    log.info("rebuilt %s as %s (%d points)", alias, new, total)
    return new


def _next_name(store: Store, alias: str, current: str) -> str:
    """``<alias>__N+1``; a leftover of a failed rebuild under that name is dropped first."""
    match = re.fullmatch(rf"{re.escape(alias)}__(\d+)", current)
    name = f"{alias}__{int(match.group(1)) + 1 if match else 1}"
    if name != current and store.exists(name):
        log.warning("dropping %s, left half-built by an earlier rebuild", name)
        store.drop_collection(name)
    return name


def _create_like(
    store: Store,
    info: qm.CollectionInfo,
    new: str,
    layout: CollectionLayout,
    encoders: Mapping[str, DenseEncoder],
) -> None:
    """The new collection: the old one's vectors (the re-encoded ones at their new size),
    metadata and payload indexes."""
    params = info.config.params
    dense = {
        name: qm.VectorParams(
            size=layout.dense.get(name, cfg.size) if name in encoders else cfg.size,
            distance=cfg.distance,
        )
        for name, cfg in dict(params.vectors or {}).items()
    }
    sparse = {
        name: qm.SparseVectorParams(modifier=cfg.modifier)
        for name, cfg in dict(params.sparse_vectors or {}).items()
    }
    metadata = dict(info.config.metadata or {})
    recorded = metadata.get("connector", {}).get("vectors", {})
    for name, encoder in encoders.items():
        if name in recorded:
            recorded[name] = {"kind": "dense", "signature": encoder.signature, "size": encoder.dim}
    indexes = {key: value.data_type for key, value in (info.payload_schema or {}).items()}
    create_chunk_collection(store, new, dense, sparse, metadata=metadata, indexes=indexes)


def _copy(
    store: Store,
    old: str,
    new: str,
    encoders: Mapping[str, DenseEncoder],
    page: int,
    total: int,
    step: StepCallback,
) -> int:
    copied = 0
    for records in store.pages(old, page=page, with_payload=True, with_vectors=True):
        points = _reencoded(records, encoders)
        store.upsert(new, points)
        copied += len(points)
        step("copied", {"copied": copied, "total": total})
    return copied


def _reencoded(records: list[Any], encoders: Mapping[str, DenseEncoder]) -> list[qm.PointStruct]:
    texts = []
    for record in records:
        text = (record.payload or {}).get("text")
        if not isinstance(text, str):
            raise SinkError(f"point {record.id} has no text to re-encode its vectors from")
        texts.append(text)
    fresh = {name: encoder.encode(texts) for name, encoder in encoders.items()}
    points = []
    for i, record in enumerate(records):
        vectors = dict(record.vector or {})
        payload = dict(record.payload or {})
        encoded_with = dict(payload.get("encoded_with") or {})
        for name, encoder in encoders.items():
            vectors[name] = fresh[name][i]
            encoded_with[name] = encoder.signature
        payload["encoded_with"] = encoded_with
        points.append(qm.PointStruct(id=record.id, vector=vectors, payload=payload))
    return points

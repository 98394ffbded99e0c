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
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from qdrant_client import models as qm

from connector.errors import SinkError
from connector.store._sink import CHUNK_INDEXES

if TYPE_CHECKING:
    from connector.dense import DenseEncoder
    from connector.store._sink import CollectionLayout, QdrantSink

__all__ = ["StepCallback", "rebuild_collection", "size_changes"]

log = logging.getLogger(__name__)

StepCallback = Callable[[str, dict[str, Any]], None]
"""Told ``(step, details)``: ``created``, ``copied`` (per page), ``verified``, ``swapped``,
``dropped``."""


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


def rebuild_collection(
    sink: QdrantSink,
    layout: CollectionLayout,
    encoders: Mapping[str, DenseEncoder],
    *,
    page: int = 256,
    on_step: StepCallback | None = None,
) -> str:
    """Rebuild the sink's collection with ``encoders``' vectors re-encoded; returns its new name.

    Args:
        sink: Sink of the collection; ``sink.collection`` is the alias (or legacy name).
        layout: The sizes the configured models need.
        encoders: The dense encoders whose vectors change, by vector name.
        page: Points copied per request.
        on_step: Told about each step.

    Raises:
        SinkError: A point has no text to re-encode, or the collection changed during the copy
            (a sync wrote to it); the alias is left on the old collection and the new one dropped.
    """
    step = on_step or (lambda name, details: None)
    alias, client = sink.collection, sink.client
    old = sink.physical_name()
    aliased = old != alias
    new = _next_name(sink, alias, old)
    info = sink.request(f"read collection {old!r}", lambda: client.get_collection(old))
    total = _count(sink, old)
    _create_like(sink, info, new, layout, encoders)
    step("created", {"collection": new, "total": total})
    try:
        copied = _copy(sink, old, new, encoders, page, total, step)
        if copied != total or _count(sink, old) != total or _count(sink, new) != total:
            raise SinkError(
                f"collection {old!r} changed while it was being rebuilt (a sync running?); "
                "nothing was swapped: run `connector migrate` again when no sync runs"
            )
        step("verified", {"collection": new, "points": total})
    except BaseException:
        sink.request(f"drop half-built {new!r}", lambda: client.delete_collection(new))
        raise
    create = qm.CreateAliasOperation(
        create_alias=qm.CreateAlias(collection_name=new, alias_name=alias)
    )
    if aliased:
        # One request: Qdrant applies the alias changes together, so readers never miss it.
        drop = qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias))
        sink.request(
            f"move alias {alias!r} to {new!r}",
            lambda: client.update_collection_aliases(change_aliases_operations=[drop, create]),
        )
        step("swapped", {"alias": alias, "collection": new})
        sink.request(f"drop collection {old!r}", lambda: client.delete_collection(old))
    else:
        log.warning(
            "collection %s predates aliases: it is dropped before the alias takes its name, so "
            "for a moment the name answers nothing (its points are safe in %s)",
            old,
            new,
        )
        sink.request(f"drop collection {old!r}", lambda: client.delete_collection(old))
        sink.request(
            f"create alias {alias!r} for {new!r}",
            lambda: client.update_collection_aliases(change_aliases_operations=[create]),
        )
        step("swapped", {"alias": alias, "collection": new})
    step("dropped", {"collection": old})
    log.info("rebuilt %s as %s (%d points)", alias, new, total)
    return new


def _next_name(sink: QdrantSink, alias: str, current: str) -> str:
    """``<alias>__N+1``; a leftover of a failed rebuild under that name is dropped first."""
    match = re.fullmatch(rf"{re.escape(alias)}__(\d+)", current)
    name = f"{alias}__{int(match.group(1)) + 1 if match else 1}"
    if name != current and sink.request(
        f"look up {name!r}", lambda: sink.client.collection_exists(name)
    ):
        log.warning("dropping %s, left half-built by an earlier rebuild", name)
        sink.request(f"drop {name!r}", lambda: sink.client.delete_collection(name))
    return name


def _count(sink: QdrantSink, name: str) -> int:
    result = sink.request(f"count {name!r}", lambda: sink.client.count(name, exact=True))
    return int(result.count)


def _create_like(
    sink: QdrantSink,
    info: qm.CollectionInfo,
    new: str,
    layout: CollectionLayout,
    encoders: Mapping[str, DenseEncoder],
) -> None:
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
    sink.request(
        f"create collection {new!r}",
        lambda: sink.client.create_collection(
            new, vectors_config=dense, sparse_vectors_config=sparse, metadata=metadata or None
        ),
    )
    indexed = {key: value.data_type for key, value in (info.payload_schema or {}).items()}
    for key in CHUNK_INDEXES:
        indexed.setdefault(key, qm.PayloadSchemaType.KEYWORD)
    for key, schema in indexed.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the embedded mode ignores payload indexes
            sink.request(
                f"index {key!r} of {new!r}",
                lambda key=key, schema=schema: sink.client.create_payload_index(new, key, schema),
            )


def _copy(
    sink: QdrantSink,
    old: str,
    new: str,
    encoders: Mapping[str, DenseEncoder],
    page: int,
    total: int,
    step: StepCallback,
) -> int:
    copied = 0
    offset: Any = None
    while True:
        records, offset = sink.request(
            f"read points of {old!r}",
            lambda offset=offset: sink.client.scroll(
                old, limit=page, offset=offset, with_payload=True, with_vectors=True
            ),
        )
        if records:
            points = _reencoded(records, encoders)
            sink.request(
                f"copy {len(points)} points into {new!r}",
                lambda points=points: sink.client.upsert(new, points, wait=True),
            )
            copied += len(points)
            step("copied", {"copied": copied, "total": total})
        if offset is None:
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

"""Queries over a synced collection: dense, sparse, or both fused with RRF by Qdrant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from qdrant_client import models as qm

from connector.errors import ConfigError, SinkError

if TYPE_CHECKING:
    from connector.dense import DenseEncoder
    from connector.runner import SparseTarget
    from connector.sink import QdrantSink

__all__ = ["Hit", "Mode", "Searcher"]

Mode = Literal["hybrid", "dense", "sparse"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "sparse")


@dataclass(frozen=True, slots=True)
class Hit:
    """One found chunk."""

    chunk_id: str
    score: float
    source: str
    point_id: str
    text: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Searcher:
    """Encodes queries with the same models the sync used and asks Qdrant.

    Args:
        sink: The collection to query.
        dense: The dense ensemble.
        sparse: The sparse model, or ``None`` when the collection has none.
        candidates: How many hits each vector contributes before fusion (at least ``limit``).
    """

    def __init__(
        self,
        sink: QdrantSink,
        dense: Sequence[DenseEncoder],
        sparse: SparseTarget | None,
        *,
        candidates: int = 100,
    ) -> None:
        self.sink = sink
        self.dense = list(dense)
        self.sparse = sparse
        self.candidates = candidates

    def search(self, query: str, *, mode: Mode = "hybrid", limit: int = 10) -> list[Hit]:
        """The best ``limit`` chunks for ``query``.

        Raises:
            ConfigError: ``mode`` needs a sparse model and none is configured, or ``limit`` < 1.
            SinkError: Qdrant refused or failed the query.
        """
        if mode not in MODES:
            raise ConfigError(f"--mode: {mode!r} is not one of {', '.join(MODES)}")
        if limit < 1:
            raise ConfigError("--limit: must be at least 1")
        branches = self._branches(query, mode, max(limit, self.candidates))
        if not branches:
            return []  # e.g. a sparse-only query made entirely of stopwords
        name = self.sink.collection
        if not self.sink.request(
            "look up collection", lambda: self.sink.client.collection_exists(name)
        ):
            raise SinkError(f"collection {name!r} does not exist (run `connector sync` first)")
        if len(branches) == 1:
            only = branches[0]
            response = self.sink.request(
                f"query {name!r}",
                lambda: self.sink.client.query_points(
                    name, query=only.query, using=only.using, limit=limit, with_payload=True
                ),
            )
        else:
            response = self.sink.request(
                f"query {name!r}",
                lambda: self.sink.client.query_points(
                    name,
                    prefetch=branches,
                    query=qm.FusionQuery(fusion=qm.Fusion.RRF),
                    limit=limit,
                    with_payload=True,
                ),
            )
        return [_hit(point) for point in response.points]

    def _has_sparse_vector(self) -> bool:
        assert self.sparse is not None
        name = self.sink.collection
        info = self.sink.request(f"read {name!r}", lambda: self.sink.client.get_collection(name))
        return self.sparse.vector_name in (info.config.params.sparse_vectors or {})

    def _branches(self, query: str, mode: Mode, depth: int) -> list[qm.Prefetch]:
        branches: list[qm.Prefetch] = []
        if mode in ("hybrid", "dense"):
            for encoder in self.dense:
                vector = encoder.encode_query(query)
                branches.append(qm.Prefetch(query=vector, using=encoder.name, limit=depth))
        if mode in ("hybrid", "sparse"):
            if self.sparse is None:
                if mode == "sparse":
                    raise ConfigError("--mode sparse: sparse is off for this collection")
            else:
                vec = self.sparse.generator.encode_query(query, self.sparse.model_name)
                if not vec["indices"]:
                    return branches
                sparse = qm.SparseVector(indices=vec["indices"], values=vec["values"])
                branches.append(
                    qm.Prefetch(query=sparse, using=self.sparse.vector_name, limit=depth)
                )
        return branches


def _hit(point: qm.ScoredPoint) -> Hit:
    payload = point.payload or {}
    return Hit(
        chunk_id=str(payload.get("chunk_id", "")),
        score=float(point.score),
        source=str(payload.get("source", "")),
        point_id=str(point.id),
        text=str(payload.get("text", "")),
        metadata=dict(payload.get("metadata") or {}),
    )

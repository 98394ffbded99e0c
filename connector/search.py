"""Queries over a synced collection: dense, sparse, or both fused by Qdrant (DBSF or RRF).

Optionally with dense pseudo-relevance feedback: the query's dense vector is moved towards the
dense vectors of its first few hits (Rocchio), and the query runs again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from qdrant_client import models as qm

from connector.errors import ConfigError, SinkError

if TYPE_CHECKING:
    from connector.dense import DenseEncoder
    from connector.sparse.target import SparseTarget
    from connector.store import Store

__all__ = ["FUSIONS", "MODES", "Fusion", "Hit", "Mode", "Searcher"]

Mode = Literal["hybrid", "dense", "sparse"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "sparse")
Fusion = Literal["dbsf", "rrf"]
FUSIONS: tuple[Fusion, ...] = ("dbsf", "rrf")
_QDRANT_FUSION = {"dbsf": qm.Fusion.DBSF, "rrf": qm.Fusion.RRF}


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
        store: The Qdrant the collection is on.
        collection: The collection to query.
        dense: The dense ensemble.
        sparse: The sparse model, or ``None`` when the collection has none.
        candidates: How many hits each vector contributes before fusion (at least ``limit``).
        fusion: How Qdrant merges the vectors' hit lists: ``dbsf`` (scores normalised by their
            spread, then summed) or ``rrf`` (reciprocal rank).
        feedback_docs: First hits whose dense vectors refine the query (0: no feedback).
        feedback_weight: Weight of those hits' mean vector added to the query's.
    """

    def __init__(
        self,
        store: Store,
        collection: str,
        dense: Sequence[DenseEncoder],
        sparse: SparseTarget | None,
        *,
        candidates: int = 100,
        fusion: Fusion = "dbsf",
        feedback_docs: int = 0,
        feedback_weight: float = 0.5,
    ) -> None:
        if fusion not in FUSIONS:
            raise ConfigError(f"search.fusion: {fusion!r} is not one of {', '.join(FUSIONS)}")
        if feedback_docs < 0 or not math.isfinite(feedback_weight) or feedback_weight < 0:
            raise ConfigError("search.feedback_docs and search.feedback_weight must be >= 0")
        self.store = store
        self.collection = collection
        self.dense = list(dense)
        self.sparse = sparse
        self.candidates = candidates
        self.fusion = fusion
        self.feedback_docs = feedback_docs
        self.feedback_weight = feedback_weight
        self._collection_checked = False

    def search(self, query: str, *, mode: Mode = "hybrid", limit: int = 10) -> list[Hit]:
        """The best ``limit`` chunks for ``query``.

        Raises:
            ConfigError: ``mode`` needs a sparse model and none is configured, or ``limit`` < 1.
            SinkError: Qdrant refused or failed the query, or the collection does not exist.
        """
        if mode not in MODES:
            raise ConfigError(f"--mode: {mode!r} is not one of {', '.join(MODES)}")
        if limit < 1:
            raise ConfigError("--limit: must be at least 1")
        if mode == "sparse" and self.sparse is None:
            raise ConfigError("--mode sparse: sparse is off for this collection")
        dense = (
            {e.name: e.encode_query(query) for e in self.dense}
            if mode in ("hybrid", "dense")
            else {}
        )
        sparse = self._sparse_query(query) if mode in ("hybrid", "sparse") else None
        if not dense and sparse is None:
            return []  # e.g. a sparse-only query made entirely of stopwords
        self._check_collection()
        if dense and self.feedback_docs:
            first = self._query(dense, sparse, self.feedback_docs, with_vectors=list(dense))
            dense = _with_feedback(dense, first, self.feedback_weight)
        points = self._query(dense, sparse, limit)
        return [_hit(point) for point in points]

    def _check_collection(self) -> None:
        # Once per searcher: a batch of queries asks only once.
        if self._collection_checked:
            return
        name = self.collection
        if not self.store.exists(name):
            raise SinkError(f"collection {name!r} does not exist (run `connector sync` first)")
        self._collection_checked = True

    def _sparse_query(self, query: str) -> qm.SparseVector | None:
        if self.sparse is None:
            return None
        vec = self.sparse.generator.encode_query(query, self.sparse.model_name)
        if not vec["indices"]:
            return None
        return qm.SparseVector(indices=vec["indices"], values=vec["values"])

    def _query(
        self,
        dense: dict[str, list[float]],
        sparse: qm.SparseVector | None,
        limit: int,
        *,
        with_vectors: list[str] | bool = False,
    ) -> list[qm.ScoredPoint]:
        depth = max(limit, self.candidates)
        branches = [qm.Prefetch(query=v, using=name, limit=depth) for name, v in dense.items()]
        if sparse is not None:
            assert self.sparse is not None
            branches.append(qm.Prefetch(query=sparse, using=self.sparse.vector_name, limit=depth))
        if len(branches) == 1:
            only = branches[0]
            return self.store.query(
                self.collection,
                only.query,
                using=only.using,
                limit=limit,
                with_vectors=with_vectors,
            )
        return self.store.query(
            self.collection,
            qm.FusionQuery(fusion=_QDRANT_FUSION[self.fusion]),
            prefetch=branches,
            limit=limit,
            with_vectors=with_vectors,
        )


def _with_feedback(
    dense: dict[str, list[float]], first: Sequence[qm.ScoredPoint], weight: float
) -> dict[str, list[float]]:
    """Each dense query vector plus ``weight`` times the mean of the first hits' vectors."""
    out = {}
    for name, query in dense.items():
        found = [p.vector[name] for p in first if isinstance(p.vector, dict) and name in p.vector]
        vectors = [v for v in found if isinstance(v, list) and len(v) == len(query)]
        if not vectors:
            out[name] = query
            continue
        moved = [
            q + weight * sum(column) / len(vectors)
            for q, column in zip(query, zip(*vectors, strict=True), strict=True)
        ]
        norm = math.sqrt(sum(x * x for x in moved)) or 1.0
        out[name] = [x / norm for x in moved]
    return out


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

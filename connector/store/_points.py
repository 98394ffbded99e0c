"""Points as a sync writes them: plain tuples, no client models.

Building qdrant-client's pydantic models costs more per point than the rest of a sync's CPU work
on a point; the embedded engine takes these tuples as they are, and the store builds the client's
models only for a client that needs them (a server, qdrant-client's local mode).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from qdrant_client import models as qm

__all__ = ["PointWrite", "SparseValues", "client_vectors"]


class SparseValues(NamedTuple):
    """A sparse vector: term ids and their weights, aligned."""

    indices: list[int]
    values: list[float]


class PointWrite(NamedTuple):
    """One point, whole: its id, its named vectors (a dense vector is a list of floats, or an
    array with ``tolist``; a sparse one :class:`SparseValues`) and its payload."""

    id: str
    vectors: dict[str, Any]
    payload: dict[str, Any]


def client_vectors(vectors: dict[str, Any]) -> dict[str, Any]:
    """``vectors`` as qdrant-client takes them."""
    return {
        name: qm.SparseVector(indices=v.indices, values=v.values)
        if isinstance(v, SparseValues)
        else v
        for name, v in vectors.items()
    }

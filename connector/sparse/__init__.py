"""Sparse models: a registry of classes that describe themselves, and one contract for every model.

Each model writes document vectors and encodes queries in one index space; a collection's sparse
vector must be queried in the space it was written in.
"""

from __future__ import annotations

from connector.chunks import ChunkRecord
from connector.sparse._model import SparseEncoder, SparseModel, SparseModelDescription
from connector.sparse._registry import SPARSE_MODEL_REGISTRY, sparse_model
from connector.sparse.generator import SparseInferenceResult, SparseVectorGenerator

__all__ = [
    "SPARSE_MODEL_REGISTRY",
    "ChunkRecord",
    "SparseEncoder",
    "SparseInferenceResult",
    "SparseModel",
    "SparseModelDescription",
    "SparseVectorGenerator",
    "sparse_model",
]

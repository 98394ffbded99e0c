"""The sparse vector every sparse model returns."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SparseVec"]


@dataclass(frozen=True, slots=True)
class SparseVec:
    """A sparse vector: parallel lists of term ids and weights.

    Attributes:
        indices: Term ids in the model's index space, unique.
        values: Weights aligned with ``indices``.
        tokens: The terms aligned with ``indices`` (stems or word pieces; for debugging).
        total_terms: Term occurrences the vector was built from, when the model counts them
            (BM25's document length); ``None`` otherwise.
    """

    indices: list[int]
    values: list[float]
    tokens: list[str]
    total_terms: int | None = None

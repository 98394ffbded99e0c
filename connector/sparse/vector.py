"""The sparse vector every sparse model returns."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SparseVec"]


@dataclass(frozen=True, slots=True)
class SparseVec:
    """A sparse vector: parallel lists of term ids and weights.

    Attributes:
        indices: Term ids (``abs(mmh3.hash(stem))``), unique, in first-occurrence order.
        values: Weights aligned with ``indices``.
        tokens: The stems aligned with ``indices`` (for debugging and vocabulary dumps).
    """

    indices: list[int]
    values: list[float]
    tokens: list[str]

"""The sparse vector every sparse model returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SparseVec", "stem_term_ids"]


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


def stem_term_ids(
    tokenize: Callable[[str], list[str]], term_id: Callable[[str], int], term: str
) -> list[tuple[int, str]]:
    """Where a free-form term lands in a stem-hash space: one ``(id, stem)`` per distinct stem.

    Empty when every word of ``term`` is a stopword.
    """
    return [(term_id(stem), stem) for stem in dict.fromkeys(tokenize(term))]

"""Sparse models: a registry described by data, and one contract for every model.

Each model writes document vectors and encodes queries in one index space; a collection's sparse
vector must be queried in the space it was written in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from connector.errors import ConfigError

if TYPE_CHECKING:
    from connector.settings import SparseSettings
    from connector.sparse.vector import SparseVec

__all__ = ["SPARSE_MODELS", "SparseEncoder", "SparseModelSpec", "load_sparse_encoder", "model_spec"]


@dataclass(frozen=True, slots=True)
class SparseModelSpec:
    """What the connector knows about one sparse model."""

    name: str
    kind: str
    """Family: ``bm25``, ``attention`` (BM42) or ``splade``."""
    base_model: str | None
    """Model whose tokenizer or weights it uses, if any."""
    recommended_batch_size: int
    idf: bool
    """Whether the collection's sparse vector needs Qdrant's IDF modifier."""
    index_space: str
    """How term ids are made: ``mmh3(stem)`` for BM25 and BM42, ``vocab`` for SPLADE."""


SPARSE_MODELS: dict[str, SparseModelSpec] = {
    "qdrant-bm25": SparseModelSpec(
        name="qdrant-bm25",
        kind="bm25",
        base_model=None,
        recommended_batch_size=256,
        idf=True,
        index_space="mmh3(snowball-stem)",
    ),
}


class SparseEncoder(Protocol):
    """The contract every sparse model keeps."""

    @property
    def signature(self) -> str:
        """Changes whenever an option that changes vectors changes."""
        ...

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVec]:
        """One vector per text, in order."""
        ...

    def encode_query(self, text: str) -> SparseVec:
        """The query-side vector (it differs from the document side for BM25)."""
        ...


def model_spec(name: str) -> SparseModelSpec:
    """The registry entry of ``name``.

    Raises:
        ConfigError: ``name`` is not a known model; the message lists the known ones.
    """
    try:
        return SPARSE_MODELS[name]
    except KeyError:
        known = ", ".join(sorted(SPARSE_MODELS))
        raise ConfigError(f"sparse.model: unknown sparse model {name!r}; known: {known}") from None


def load_sparse_encoder(settings: SparseSettings) -> SparseEncoder:
    """Build the configured sparse encoder."""
    spec = model_spec(settings.model)
    if spec.kind == "bm25":
        from connector.sparse.bm25 import Bm25

        options = settings.bm25
        try:
            return Bm25(
                k=options.k, b=options.b, avg_len=options.avg_len, language=options.language
            )
        except ValueError as exc:
            raise ConfigError(f"sparse.bm25: {exc}") from None
    raise ConfigError(f"sparse.model: {spec.name!r} has no encoder in this version")

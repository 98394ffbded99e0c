"""What a sync or a search needs of the sparse model: kept apart from the sync pipeline, so that
a search imports none of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.sparse.generator import SparseVectorGenerator

__all__ = ["SparseTarget"]


@dataclass(frozen=True, slots=True)
class SparseTarget:
    """The sparse model of a run, the named vector it writes, and where it may run."""

    generator: SparseVectorGenerator
    model_name: str
    vector_name: str
    idf: bool
    use_gpu: bool = False
    device_ids: tuple[int, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    """Options that shape the vectors (BM25's k, b, avg_len...), recorded on the collection."""

    @property
    def signature(self) -> str:
        return self.generator.signature(self.model_name)

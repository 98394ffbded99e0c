"""Sparse models: a registry described by data, and one contract for every model.

Each model writes document vectors and encodes queries in one index space; a collection's sparse
vector must be queried in the space it was written in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from connector.errors import ConfigError

if TYPE_CHECKING:
    from connector.gpu._executor import DeviceExecutor
    from connector.settings import SparseSettings
    from connector.sparse.generator import SparseVectorGenerator
    from connector.sparse.vector import SparseVec

__all__ = [
    "SPARSE_MODELS",
    "ChunkRecord",
    "SparseEncoder",
    "SparseInferenceResult",
    "SparseModelSpec",
    "SparseVectorGenerator",
    "build_encoder",
    "generator_from_settings",
    "model_spec",
]


@dataclass(frozen=True, slots=True)
class SparseModelSpec:
    """What the connector knows about one sparse model."""

    name: str
    kind: str
    """Family: ``bm25``, ``attention`` (BM42) or ``splade``."""
    flavour: str
    """Which implementation's vectors it reproduces (``fastembed``, ``engine``, ``torch``)."""
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
        flavour="fastembed",
        base_model=None,
        recommended_batch_size=256,
        idf=True,
        index_space="mmh3(snowball-stem)",
    ),
    "qdrant-bm25-engine": SparseModelSpec(
        name="qdrant-bm25-engine",
        kind="bm25",
        flavour="engine",
        base_model=None,
        recommended_batch_size=256,
        idf=True,
        index_space="qdrant-engine(word-tokenizer, snowball-stem)",
    ),
    "qdrant-minilm-attention": SparseModelSpec(
        name="qdrant-minilm-attention",
        kind="attention",
        flavour="torch",
        base_model="sentence-transformers/all-MiniLM-L6-v2",
        recommended_batch_size=64,
        idf=True,
        index_space="mmh3(snowball-stem)",
    ),
    "splade": SparseModelSpec(
        name="splade",
        kind="splade",
        flavour="sentence-transformers",
        base_model=None,
        recommended_batch_size=32,
        idf=False,
        index_space="vocab",
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
        """The query-side vector (it differs from the document side for BM25 and BM42)."""
        ...

    def term_ids(self, term: str) -> list[tuple[int, str]]:
        """Where a free-form term lands in this index space (for the metadata fallback)."""
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


def build_encoder(spec: SparseModelSpec, options: dict[str, dict[str, Any]]) -> SparseEncoder:
    """The encoder of ``spec`` with its options (models inside load on first use).

    Raises:
        ConfigError: An option is out of range, or a required one is missing.
    """
    try:
        if spec.kind == "bm25" and spec.flavour == "fastembed":
            from connector.sparse.bm25 import Bm25

            return Bm25(**options.get("bm25", {}))
        if spec.kind == "bm25":
            from connector.sparse.bm25_engine import EngineBm25

            return EngineBm25(**options.get("bm25", {}))
        if spec.kind == "attention":
            from connector.sparse.bm42 import Bm42

            # One forward pass per batch the runner hands over (it adapts that size on a GPU).
            return Bm42(**{"batch_size": spec.recommended_batch_size, **options.get("bm42", {})})
        if spec.kind == "splade":
            from connector.sparse.splade import Splade

            splade = dict(options.get("splade", {}))
            if not splade.get("model"):
                raise ConfigError(
                    "sparse.splade.model: the splade model needs a checkpoint (path or hub id)"
                )
            return Splade(**splade)
    except ValueError as exc:
        raise ConfigError(f"sparse.{spec.kind}: {exc}") from None
    raise ConfigError(f"sparse.model: {spec.name!r} has no encoder in this version")


def generator_from_settings(
    settings: SparseSettings, executor: DeviceExecutor | None = None
) -> SparseVectorGenerator:
    """A generator whose models take their options from ``settings`` and run on ``executor``."""
    from connector.sparse.generator import ModelRegistry, SparseVectorGenerator

    return SparseVectorGenerator(ModelRegistry(settings.model_options()), executor)


def __getattr__(name: str) -> Any:
    # The seed's names, importable from here without loading the generator for every user.
    if name in {"SparseVectorGenerator", "SparseInferenceResult"}:
        from connector.sparse import generator

        return getattr(generator, name)
    if name == "ChunkRecord":
        from connector.chunks import ChunkRecord

        return ChunkRecord
    raise AttributeError(name)

"""What every sparse model is: an encoder (the contract) that describes itself (class-level data).

A registered model class carries a :class:`SparseModelDescription` and says how its options come
from the ``sparse`` settings, so that callers never dispatch on a model's name or family.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

from connector.errors import ConfigError

if TYPE_CHECKING:
    from connector.settings import SparseSettings
    from connector.sparse.vector import SparseVec

__all__ = ["SparseEncoder", "SparseModel", "SparseModelDescription"]


@dataclass(frozen=True, slots=True)
class SparseModelDescription:
    """What the connector knows about one sparse model, before any of it loads."""

    name: str
    """The ``sparse.model`` value that selects it."""
    flavour: str
    """Which implementation's vectors it reproduces (``fastembed``, ``engine``, ``torch``...)."""
    index_space: str
    """How term ids are made: ``mmh3(snowball-stem)`` for BM25 and BM42, ``vocab`` for SPLADE."""
    idf: bool
    """Whether the collection's sparse vector needs Qdrant's IDF modifier."""
    recommended_batch_size: int
    """Texts per batch the runner hands over (it adapts that size on a GPU)."""
    base_model: str | None
    """Model whose tokenizer or weights it uses, if any."""
    weighting: str
    """What its values are, as ``stats.weighting`` of each vector dict names it."""
    options_key: str
    """Its section of the ``sparse`` settings (``sparse.bm25``), and its key in the options a
    :class:`~connector.sparse.generator.ModelRegistry` takes."""
    auto_avg_len: bool
    """Whether ``sparse.bm25.avg_len = "auto"`` applies: the average chunk length is measured over
    the corpus and recorded on the collection."""


class SparseEncoder(Protocol):
    """The contract every sparse model keeps."""

    @property
    def signature(self) -> str:
        """Changes whenever an option that changes vectors changes."""
        ...

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVec]:
        """One vector per text, in order, each with lists of its own: callers keep them as they
        are, without copies, so a vector must not share a list with another or with a cache."""
        ...

    def encode_query(self, text: str) -> SparseVec:
        """The query-side vector (it differs from the document side for BM25 and BM42)."""
        ...

    def term_ids(self, term: str) -> list[tuple[int, str]]:
        """Where a free-form term lands in this index space (for the metadata fallback)."""
        ...


class SparseModel(SparseEncoder):
    """Base of every registered model: its description, and how settings become an encoder.

    A subclass sets :attr:`description`, implements :meth:`options`, and overrides
    :meth:`recorded_options` when options that shape its vectors belong on the collection.
    """

    description: ClassVar[SparseModelDescription]

    @classmethod
    @abstractmethod
    def options(cls, sparse: SparseSettings, *, avg_len: float | None = None) -> dict[str, Any]:
        """Its constructor's keyword arguments, from its section of the ``sparse`` settings.

        Args:
            sparse: The ``sparse`` settings.
            avg_len: What ``sparse.bm25.avg_len = "auto"`` was resolved to (see
                :func:`connector.sparse.avglen.resolve_avg_len`); ignored by a model that does
                not measure it.

        Raises:
            ConfigError: The model needs ``avg_len`` and it was not given.
        """

    @classmethod
    def recorded_options(cls, sparse: SparseSettings, options: Mapping[str, Any]) -> dict[str, Any]:
        """What the collection's metadata records of ``options`` (none by default).

        Args:
            sparse: The ``sparse`` settings ``options`` came from.
            options: What :meth:`options` returned.
        """
        return {}

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        """The encoder with ``options`` (models inside load on first use).

        Raises:
            ConfigError: An option is out of range, or a required one is missing.
        """
        try:
            return cls(**options)
        except ValueError as exc:
            raise ConfigError(f"sparse.{cls.description.options_key}: {exc}") from None

    @classmethod
    def from_settings(cls, sparse: SparseSettings, *, avg_len: float | None = None) -> Self:
        """The encoder the ``sparse`` settings configure (see :meth:`options`).

        Raises:
            ConfigError: An option is out of range, or a required one is missing.
        """
        return cls.from_options(cls.options(sparse, avg_len=avg_len))

"""The registered sparse models, by name.

A new model is one :class:`~connector.sparse.SparseModel` subclass (its description, its options)
and one line in :data:`SPARSE_MODEL_REGISTRY`. Importing this module loads no model: each class
imports torch or transformers only when its model first loads.
"""

from __future__ import annotations

from connector.errors import ConfigError
from connector.sparse._model import SparseModel
from connector.sparse.bm25 import Bm25
from connector.sparse.bm25_engine import EngineBm25
from connector.sparse.bm42 import Bm42
from connector.sparse.splade import Splade

__all__ = ["SPARSE_MODEL_REGISTRY", "sparse_model"]

SPARSE_MODEL_REGISTRY: tuple[type[SparseModel], ...] = (Bm25, EngineBm25, Bm42, Splade)
"""Every model ``sparse.model`` can name."""

_BY_NAME = {model.description.name: model for model in SPARSE_MODEL_REGISTRY}


def sparse_model(name: str) -> type[SparseModel]:
    """The registered class of the sparse model ``name``.

    Raises:
        ConfigError: ``name`` is not a known model; the message lists the known ones.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise ConfigError(f"sparse.model: unknown sparse model {name!r}; known: {known}") from None

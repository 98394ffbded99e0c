"""BM25's average chunk length taken from the corpus (``sparse.bm25.avg_len = "auto"``).

BM25 normalises each term frequency by the chunk's length relative to ``avg_len``. fastembed fixes
``avg_len`` at 256 tokens; for chunks much shorter or longer than that, the measured mean ranks
better. The value changes every sparse vector, so it is measured once, by the first sync into a
collection, recorded in the collection's metadata (``connector.vectors.<name>.options``), and
reused by every later sync and search of that collection.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from connector.errors import ConfigError
from connector.sparse._registry import sparse_model

if TYPE_CHECKING:
    from connector.settings import Settings
    from connector.sources import Source
    from connector.store import Store

__all__ = ["measure_avg_len", "recorded_avg_len", "resolve_avg_len"]

log = logging.getLogger(__name__)

_BATCH = 512


def recorded_avg_len(metadata: dict[str, Any], vector_name: str) -> float | None:
    """The measured ``avg_len`` a collection's metadata records for ``vector_name``, if any."""
    vectors = (metadata.get("connector") or {}).get("vectors") or {}
    options = (vectors.get(vector_name) or {}).get("options") or {}
    value = options.get("avg_len")
    if options.get("avg_len_auto") and isinstance(value, int | float) and value > 0:
        return float(value)
    return None


def measure_avg_len(texts: Iterable[str], settings: Settings) -> tuple[float, int]:
    """Mean count of kept tokens per text, with the configured BM25's tokenizer.

    Returns:
        ``(mean, texts counted)``; the mean is rounded to two decimals so that signatures stay
        short, and is ``0.0`` when there was no text.
    """
    # The tokenizer does not depend on avg_len; any valid number builds it.
    encoder = sparse_model(settings.sparse.model).from_settings(settings.sparse, avg_len=256.0)
    tokens = count = 0
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) >= _BATCH:
            tokens += sum(_lengths(encoder, batch))
            count += len(batch)
            batch = []
    if batch:
        tokens += sum(_lengths(encoder, batch))
        count += len(batch)
    return (round(tokens / count, 2) if count else 0.0), count


def _lengths(encoder: Any, texts: list[str]) -> list[int]:
    vectors = encoder.encode_documents(texts)
    if all(v.total_terms is not None for v in vectors):
        return [v.total_terms for v in vectors]
    return [len(encoder.tokenize(text)) for text in texts]


def resolve_avg_len(
    settings: Settings, store: Store, collection: str, source: Source | None = None
) -> float | None:
    """The ``avg_len`` to use when it is ``"auto"`` (``None`` when it is a number).

    The value recorded on the collection wins; without one it is measured over ``source`` (one
    extra read of it), or, for a search with no source, the fixed default is used (a BM25 query
    vector does not depend on it).

    Args:
        settings: The ``sparse`` section.
        store: The Qdrant the collection is on.
        collection: The collection whose metadata may record the value.
        source: What a sync reads, to measure over; ``None`` for a search.

    Raises:
        ConfigError: ``"auto"`` with a sparse model other than BM25.
        SourceError: The source failed while being measured (nothing is written then).
    """
    if settings.sparse.bm25.avg_len != "auto":
        return None
    described = sparse_model(settings.sparse.model).description
    if not described.auto_avg_len:
        raise ConfigError(f"sparse.bm25.avg_len: 'auto' needs a BM25 model, not {described.name!r}")
    vector_name = settings.sparse.vector_name or described.name
    recorded = recorded_avg_len(store.metadata(collection), vector_name)
    if recorded is not None:
        return recorded
    if source is None:
        return 256.0
    value, count = measure_avg_len((chunk.text for chunk in source), settings)
    if not count or value <= 0:
        log.warning("sparse.bm25.avg_len = auto: the source has no tokens; using 256")
        return 256.0
    log.info("BM25 avg_len measured over %d chunks: %s", count, value)
    return value

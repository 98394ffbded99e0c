"""The raw dense loop the benchmarks hold a sync against (not part of the connector)."""

from __future__ import annotations

import time
from typing import Any


def encode_windows(model: Any, texts: list[str], window: int, batch_size: int) -> float:
    """Seconds a plain loop takes to ``SentenceTransformer.encode`` ``texts`` in windows of
    ``window`` (the sync's batch size), ``batch_size`` per forward pass, into lists as a sync
    needs them: no lease, no cap, no staging, no adaptation."""
    started = time.perf_counter()
    for start in range(0, len(texts), window):
        model.encode(
            texts[start : start + window],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).tolist()
    return time.perf_counter() - started

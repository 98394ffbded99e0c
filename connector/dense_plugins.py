"""Plug-in dense encoders that ship with the connector.

:class:`RateEncoder` stands in for a GPU model in benchmarks and tests: its vectors come from
hashes of the texts, and it takes a set time per chunk while releasing the GIL, as a GPU kernel
does. Configure it like any plug-in::

    [dense]
    models = [{ encoder = "connector.dense_plugins:RateEncoder", name = "vec",
                options = { dim = 384, rate = 3000.0 } }]
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import numpy as np

__all__ = ["RateEncoder"]


class RateEncoder:
    """Deterministic unit vectors from text hashes, at a set number of chunks per second.

    The same text always gives the same vector (on any machine and in any process); different
    texts give nearly orthogonal ones, so search finds a chunk by its exact text only.

    Args:
        dim: Vector size.
        rate: Chunks per second: each call sleeps ``len(texts) / rate`` seconds, releasing the
            GIL as a GPU kernel would. ``None``: no sleep (as fast as hashing goes).
        batch_size: Texts per call the dense stage hands over.

    Raises:
        ValueError: ``dim``, ``rate`` or ``batch_size`` is not positive.
    """

    name = "rate"

    def __init__(self, dim: int = 384, rate: float | None = None, batch_size: int = 256) -> None:
        if dim < 1 or batch_size < 1 or (rate is not None and rate <= 0):
            raise ValueError("dim, rate and batch_size must be positive")
        self.dim = dim
        self.rate = rate
        self.batch_size = batch_size
        self.device = "cpu"

    @property
    def signature(self) -> str:
        """Vectors depend on the size alone, not on the rate."""
        return f"rate-encoder|dim={self.dim}"

    def to(self, device: str) -> None:
        """Runs "on" ``device``: nothing moves, so a lease costs it nothing."""
        self.device = device

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised vector per text, in order, after ``len(texts) / rate`` seconds."""
        if self.rate is not None:
            time.sleep(len(texts) / self.rate)
        if not texts:
            return []
        # SHAKE-256 gives ``dim`` bytes per text; centred, they are the vector's coordinates
        # (never zero, so every vector has a norm).
        raw = b"".join(hashlib.shake_256(text.encode("utf-8")).digest(self.dim) for text in texts)
        vectors = np.frombuffer(raw, dtype=np.uint8).reshape(len(texts), self.dim)
        centred = vectors.astype(np.float32) - np.float32(127.5)
        centred /= np.linalg.norm(centred, axis=1, keepdims=True)
        return centred.tolist()  # type: ignore[no-any-return]

    def encode_query(self, text: str) -> list[float]:
        """The vector of ``text`` as a document, so a query of a chunk's text finds it."""
        return self.encode([text])[0]

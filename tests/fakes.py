"""Small fakes of the connector's collaborators, kept next to the tests that use them."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence

from connector.chunks import ChunkRecord
from connector.sources import SkipLog


class FakeDense:
    """A deterministic dense encoder: a hashed bag of words, L2-normalised. Counts its calls."""

    def __init__(self, name: str = "fake", dim: int = 16, version: str = "1") -> None:
        self.name = name
        self.dim = dim
        self.version = version
        self.calls = 0
        self.texts_encoded = 0

    @property
    def signature(self) -> str:
        return f"fake|dim={self.dim}|v={self.version}"

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self.dim
        for word in text.lower().split():
            digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
            vector[int.from_bytes(digest, "little") % self.dim] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        self.texts_encoded += len(texts)
        return [self._vector(text) for text in texts]

    def encode_query(self, text: str) -> list[float]:
        return self._vector(text)


class ListSource:
    """A source over a list of chunks, named like a real one."""

    def __init__(self, chunks: Sequence[ChunkRecord], name: str = "memory://test") -> None:
        self.chunks = list(chunks)
        self.name = name
        self.total_bytes: int | None = None
        self.bytes_read = 0
        self.skips = SkipLog()

    def __iter__(self) -> Iterator[ChunkRecord]:
        for chunk in self.chunks:
            self.bytes_read += len(chunk.text)
            yield chunk


def chunk(chunk_id: str, text: str, **metadata: object) -> ChunkRecord:
    return ChunkRecord(text=text, metadata=dict(metadata), chunk_id=chunk_id, location=chunk_id)

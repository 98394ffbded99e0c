"""The unit of work: one chunk of text with its id and metadata."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChunkRecord", "content_hash", "point_id", "text_hash"]

# Fixed namespace so that point ids are the same on every machine and every run.
_POINT_NAMESPACE = uuid.UUID("6f1c9a52-58a7-4b8e-9d0e-3c2f4b1a7d10")


@dataclass(slots=True)
class ChunkRecord:
    """One chunk of text to embed.

    Attributes:
        text: The chunk's text.
        metadata: Free-form metadata stored in the point's payload. ``metadata["sparse_features"]``
            feeds the sparse fallback.
        chunk_id: The chunk's id, unique within its source.
        location: Where the chunk came from (``file:line`` or ``url:line``), for error messages.
    """

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    chunk_id: str | None = None
    location: str | None = field(default=None, compare=False)


def point_id(source: str, chunk_id: str) -> str:
    """The Qdrant point id of a chunk: derived, so reruns touch the same points."""
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{source}:{chunk_id}"))


def text_hash(text: str) -> str:
    """Hash of the text alone: when it is unchanged, no vector needs recomputing."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def content_hash(text: str, metadata: dict[str, Any]) -> str:
    """Hash of text and metadata: when it is unchanged, the payload needs no rewrite."""
    canonical = json.dumps(metadata, sort_keys=True, ensure_ascii=False, default=str)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass"))
    digest.update(b"\x00")
    digest.update(canonical.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()

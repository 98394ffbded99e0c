"""The Qdrant gateway: the client, retries and error translation, the collection schema, reads and
writes. Nothing outside this package reaches into a Qdrant client.

The same code serves the embedded engines (qdrant-client's local mode, Qdrant's own engine
in-process) and a Qdrant server: only the client's construction differs.
"""

from __future__ import annotations

from connector.store._sink import (
    CollectionLayout,
    PointState,
    QdrantSink,
    WriteBatch,
    WriteCounts,
    make_client,
    translate_errors,
)

__all__ = [
    "CollectionLayout",
    "PointState",
    "QdrantSink",
    "WriteBatch",
    "WriteCounts",
    "make_client",
    "translate_errors",
]

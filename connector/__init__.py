"""Ingestion connector for Qdrant: chunks of text in, hybrid (dense + sparse) points out."""

from __future__ import annotations

from connector.chunks import ChunkRecord, point_id
from connector.errors import (
    CollectionMismatch,
    ConfigError,
    ConnectorError,
    ModelError,
    SchemaOutdated,
    SinkError,
    SinkUnavailable,
    SourceError,
    SourceUnavailable,
    TerminalError,
    TransientError,
    UnsafeDelete,
)

__version__ = "0.1.0"

__all__ = [
    "ChunkRecord",
    "CollectionMismatch",
    "ConfigError",
    "ConnectorError",
    "ModelError",
    "SchemaOutdated",
    "SinkError",
    "SinkUnavailable",
    "SourceError",
    "SourceUnavailable",
    "TerminalError",
    "TransientError",
    "UnsafeDelete",
    "__version__",
    "point_id",
]

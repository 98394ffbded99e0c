"""Where chunks come from: a JSONL file, a folder of text files, a Parquet or CSV table, or
JSONL over HTTP(S)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import httpx

from connector.chunks import ChunkRecord
from connector.errors import SourceError
from connector.sources._folder import FolderSource, chunk_text
from connector.sources._http import HttpJsonlSource
from connector.sources._jsonl import DEFAULT_MAX_LINE_BYTES, JsonlFileSource, parse_line
from connector.sources._skips import SkipLog, Skipped
from connector.sources._table import TableSource

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "FolderSource",
    "HttpJsonlSource",
    "JsonlFileSource",
    "SkipLog",
    "Skipped",
    "Source",
    "TableSource",
    "chunk_text",
    "open_source",
    "parse_line",
]


@runtime_checkable
class Source(Protocol):
    """A stream of chunks.

    Attributes:
        name: Stable identity of the source, used in point ids and the payload.
        total_bytes: The input's size when known, for progress and ETA.
        bytes_read: Bytes consumed so far, updated while iterating.
        skips: Records the current iteration skipped, with reasons; reset when it starts
            (a source without one is taken to skip nothing).
    """

    name: str
    total_bytes: int | None
    bytes_read: int
    skips: SkipLog

    def __iter__(self) -> Iterator[ChunkRecord]:
        """Stream the records; each has ``chunk_id`` and ``location`` set."""
        ...


def open_source(
    spec: str,
    *,
    name: str | None = None,
    chunk_size: int = 1000,
    chunk_overlap: int = 200,
    timeout_s: float = 30.0,
    retries: int = 3,
    strict: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    transport: httpx.BaseTransport | None = None,
    id_field: str = "id",
    text_field: str = "text",
    metadata_fields: tuple[str, ...] = (),
) -> Source:
    """Open the source a user named.

    Args:
        spec: An ``http://`` or ``https://`` URL serving JSONL, a folder of ``.txt``/``.md``
            files, a ``.parquet`` or ``.csv`` file, or a JSONL file.
        name: The source's identity; defaults to the resolved path, or the URL without
            credentials and query string.
        chunk_size: Largest chunk in characters (folders only).
        chunk_overlap: Characters shared by consecutive chunks (folders only).
        timeout_s: Timeout of each HTTP operation (URLs only).
        retries: Extra tries after a failed HTTP request (URLs only).
        strict: Fail on the first malformed record instead of skipping and reporting it.
        max_line_bytes: Longest JSONL line read; longer ones are skipped (JSONL only).
        transport: An httpx transport to use instead of the network, for tests.
        id_field: The column holding each row's id (Parquet and CSV only).
        text_field: The column holding each row's text (Parquet and CSV only).
        metadata_fields: Columns copied into each record's metadata (Parquet and CSV only).

    Returns:
        The source, not yet read.

    Raises:
        SourceError: The path does not exist or the URL is invalid.
        ValueError: The chunking settings are invalid.
    """
    if spec.lower().startswith(("http://", "https://")):
        return HttpJsonlSource(
            spec,
            name=name,
            timeout_s=timeout_s,
            retries=retries,
            transport=transport,
            strict=strict,
            max_line_bytes=max_line_bytes,
        )
    path = Path(spec)
    if path.is_dir():
        return FolderSource(
            path,
            name=name,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            strict=strict,
        )
    if path.suffix.lower() in TableSource.SUFFIXES and path.is_file():
        return TableSource(
            path,
            name=name,
            id_field=id_field,
            text_field=text_field,
            metadata_fields=metadata_fields,
            strict=strict,
        )
    if path.exists():  # a regular file, or a pipe such as /dev/stdin
        return JsonlFileSource(spec, name=name, strict=strict, max_line_bytes=max_line_bytes)
    raise SourceError(spec, "no such file or folder")

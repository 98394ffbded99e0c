"""Where chunks come from: a folder of documents (PDF, HTML, DOCX, PPTX, Markdown, text), a JSONL
file, a Parquet or CSV table, or JSONL over HTTP(S); documents and long records are cut into
chunks of the dense model's tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import httpx

from connector.chunking import TokenChunker
from connector.chunks import ChunkRecord
from connector.errors import SourceError
from connector.sources._folder import FolderSource
from connector.sources._http import HttpJsonlSource
from connector.sources._jsonl import DEFAULT_MAX_LINE_BYTES, JsonlFileSource, parse_line
from connector.sources._skips import SkipLog, Skipped
from connector.sources._split import SplitRecords
from connector.sources._table import TableSource

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "FolderSource",
    "HttpJsonlSource",
    "JsonlFileSource",
    "SkipLog",
    "Skipped",
    "Source",
    "SplitRecords",
    "TableSource",
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

    @property
    def total_bytes(self) -> int | None: ...
    @property
    def bytes_read(self) -> int: ...
    @property
    def skips(self) -> SkipLog: ...

    def __iter__(self) -> Iterator[ChunkRecord]:
        """Stream the records; each has ``chunk_id`` and ``location`` set."""
        ...


def open_source(
    spec: str,
    *,
    name: str | None = None,
    chunker: TokenChunker | None = None,
    split_records: bool = True,
    timeout_s: float = 30.0,
    retries: int = 3,
    strict: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    transport: httpx.BaseTransport | None = None,
    id_field: str = "id",
    text_field: str = "text",
    metadata_fields: tuple[str, ...] = (),
    workers: int | None = 1,
) -> Source:
    """Open the source a user named.

    Args:
        spec: An ``http://`` or ``https://`` URL serving JSONL, a folder of documents, a
            ``.parquet`` or ``.csv`` file, or a JSONL file.
        name: The source's identity; defaults to the resolved path, or the URL without
            credentials and query string.
        chunker: Cuts a folder's documents, and records longer than its size (default for a
            folder: the bundled all-MiniLM-L6-v2's window; for records: none, they pass as
            they are).
        split_records: Cut records longer than the chunker's size; ``False``: they are chunks
            already (only counted when longer than a model's window).
        timeout_s: Timeout of each HTTP operation (URLs only).
        retries: Extra tries after a failed HTTP request (URLs only).
        strict: Fail on the first malformed record instead of skipping and reporting it.
        max_line_bytes: Longest JSONL line read; longer ones are skipped (JSONL only).
        transport: An httpx transport to use instead of the network, for tests.
        id_field: The column holding each row's id (Parquet and CSV only).
        text_field: The column holding each row's text (Parquet and CSV only).
        metadata_fields: Columns copied into each record's metadata (Parquet and CSV only).
        workers: Processes that read and cut a folder's files (folders only; ``None``: by the
            folder's size, as :class:`FolderSource`).

    Returns:
        The source, not yet read.

    Raises:
        SourceError: The path does not exist or the URL is invalid.
    """
    source = _open(
        spec,
        name=name,
        chunker=chunker,
        timeout_s=timeout_s,
        retries=retries,
        strict=strict,
        max_line_bytes=max_line_bytes,
        transport=transport,
        id_field=id_field,
        text_field=text_field,
        metadata_fields=metadata_fields,
        workers=workers,
    )
    if chunker is None or isinstance(source, FolderSource):
        return source  # a folder's documents are cut already
    return SplitRecords(source, chunker, split=split_records)


def _open(
    spec: str,
    *,
    name: str | None,
    chunker: TokenChunker | None,
    timeout_s: float,
    retries: int,
    strict: bool,
    max_line_bytes: int,
    transport: httpx.BaseTransport | None,
    id_field: str,
    text_field: str,
    metadata_fields: tuple[str, ...],
    workers: int | None,
) -> Source:
    if spec.lower().startswith(("http://", "https://")):
        return HttpJsonlSource(
            spec,
            name=name,
            timeout_s=timeout_s,
            retries=retries,
            transport=transport,
            strict=strict,
            max_line_bytes=max_line_bytes,
            chunker=chunker,
        )
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path, name=name, chunker=chunker, strict=strict, workers=workers)
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

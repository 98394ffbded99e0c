"""Records longer than the dense model's window, cut into chunks of its tokens."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING

from connector.chunking import TokenChunker, truncated
from connector.chunks import ChunkRecord
from connector.sources._reading import chunk_metadata
from connector.sources._skips import SkipLog

if TYPE_CHECKING:
    from connector.sources import Source

__all__ = ["SplitRecords"]

_BATCH = 256
"""Records counted at once."""


class SplitRecords:
    """``source`` with each record longer than ``chunker.max_tokens`` cut into chunks.

    A record that fits passes as it is (same id, text and metadata: what is stored keeps its
    meaning). A longer one becomes the record's chunks, ids ``<id>#<n>``, each with the record's
    metadata and where it sits in the record's text (``doc_id``, ``chunk_index``, ``start``,
    ``end``); when the record changes, they are replaced as a document's are. With ``split``
    off (records that are chunks already), records pass as they are and those longer than a
    model's window are only counted.

    Attributes:
        truncated: Chunks of the current iteration longer than a dense model's window.
    """

    def __init__(self, source: Source, chunker: TokenChunker, *, split: bool = True) -> None:
        self.source = source
        self.chunker = chunker
        self.split = split
        self.name = source.name
        self.truncated = 0

    @property
    def total_bytes(self) -> int | None:
        return self.source.total_bytes

    @property
    def bytes_read(self) -> int:
        return self.source.bytes_read

    @property
    def skips(self) -> SkipLog:
        return self.source.skips

    def __iter__(self) -> Iterator[ChunkRecord]:
        self.truncated = 0
        windows, size = self.chunker.windows, self.chunker.max_tokens
        if not self.split and not windows:
            # Nothing to cut and no model window to count against (plug-in encoders only).
            yield from self.source
            return
        # Most records fit: counting a batch at once runs in the tokenizer's threads, off the
        # GIL, while the sync's other stages go on; only the long ones are cut. A stream (a pipe,
        # a URL: its size unknown before it is read) is counted record by record: a batch would
        # hold back what has arrived while it stalls.
        at_once = _BATCH if self.source.total_bytes is not None else 1
        records = iter(self.source)
        while batch := list(itertools.islice(records, at_once)):
            if getattr(self.source, "cut", False):
                # The source cut its records itself (a document at a URL): counting them again
                # would only tokenize the document twice.
                yield from batch
                yield from records
                self.truncated = getattr(self.source, "truncated", 0)
                return
            counts = self.chunker.count_tokens_batch([record.text for record in batch])
            for record, tokens in zip(batch, counts, strict=True):
                if tokens <= size or not self.split:
                    if truncated(tokens, windows):
                        self.truncated += 1
                    yield record
                else:
                    yield from self._cut(record)

    def _cut(self, record: ChunkRecord) -> Iterator[ChunkRecord]:
        chunks = self.chunker.chunk_text(record.text)
        doc_id = str(record.chunk_id)  # a source's records all have one
        for chunk in chunks:
            if truncated(chunk.tokens, self.chunker.windows):
                self.truncated += 1
            yield ChunkRecord(
                text=chunk.text,
                metadata=record.metadata | chunk_metadata(doc_id, chunk, len(chunks)),
                chunk_id=f"{doc_id}#{chunk.index}",
                location=f"{record.location}#{chunk.index}",
            )

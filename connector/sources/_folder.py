"""A folder of documents, each read by its format and cut into chunks of the model's tokens."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from connector.chunking import Chunk, TokenChunker, truncated
from connector.chunks import ChunkRecord
from connector.documents import UnreadableDocument, read_document
from connector.errors import SourceError
from connector.sources._skips import SkipLog

__all__ = ["FolderSource", "chunk_metadata"]


class FolderSource:
    """Every document under a folder (PDF, HTML, DOCX, PPTX, Markdown, text), cut into chunks of
    the dense model's tokens.

    Files are visited in order of their relative path, compared part by part; hidden files and
    folders (names starting with ``.``) are left out. A file in no format the connector reads,
    or one it cannot read (an encrypted PDF, a broken DOCX, text that is not UTF-8), is a skipped
    record with its path and kind, never silence. Chunk ids are ``relative/path.md#index``: a
    document that changes is replaced chunk by chunk, and one that shrinks loses the chunks it no
    longer has (the sync deletes ids it did not read).

    Args:
        path: The folder.
        name: The source's identity; by default the folder's resolved absolute path.
        chunker: Cuts each document (default: the bundled all-MiniLM-L6-v2's tokens, its window).
        strict: Raise on the first file that cannot be read instead of skipping it.

    Attributes:
        name: The source's identity.
        total_bytes: The summed size of the files found.
        bytes_read: Bytes of files consumed by the current iteration so far.
        skips: Files the current iteration skipped; raised instead when strict.
        truncated: Chunks of the current iteration longer than a dense model's window.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        chunker: TokenChunker | None = None,
        strict: bool = False,
    ) -> None:
        self.root = Path(path)
        if not self.root.is_dir():
            raise SourceError(str(path), "not a folder")
        self.name = name if name is not None else str(self.root.resolve())
        self.chunker = chunker if chunker is not None else TokenChunker.for_models({})
        self._files = self._walk()
        self.total_bytes: int | None = sum(size for _, size in self._files)
        self.bytes_read = 0
        self.skips = SkipLog(strict=strict)
        self.truncated = 0

    def _walk(self) -> list[tuple[Path, int]]:
        found: list[tuple[Path, int]] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for filename in filenames:
                if filename.startswith("."):
                    continue
                path = Path(dirpath, filename)
                try:
                    if path.is_file():
                        found.append((path, path.stat().st_size))
                except OSError as exc:
                    raise SourceError(str(path), f"cannot read: {exc.strerror or exc}") from None
        found.sort(key=lambda item: item[0].relative_to(self.root).parts)
        return found

    def __iter__(self) -> Iterator[ChunkRecord]:
        self.bytes_read = 0
        self.truncated = 0
        self.skips.reset()
        for path, size in self._files:
            relative = path.relative_to(self.root).as_posix()
            try:
                document = read_document(path)
            except UnreadableDocument as exc:
                self.bytes_read += size
                self.skips.skip(exc, document=relative)  # its stored chunks stay
                continue
            self.bytes_read += size
            chunks = self.chunker.chunk_document(document)
            for chunk in chunks:
                if truncated(chunk.tokens, self.chunker.windows):
                    self.truncated += 1
                yield ChunkRecord(
                    text=chunk.text,
                    metadata=chunk_metadata(relative, chunk, len(chunks), document.title)
                    | {"path": relative},
                    chunk_id=f"{relative}#{chunk.index}",
                    location=f"{path}#{chunk.index}",
                )


def chunk_metadata(
    doc_id: str, chunk: Chunk, count: int, title: str | None = None
) -> dict[str, object]:
    """Where ``chunk`` sits in document ``doc_id``: its index of ``count``, its character
    offsets into the document's text, and its page, heading path and the document's title where
    there are any."""
    metadata: dict[str, object] = {
        "doc_id": doc_id,
        "chunk_index": chunk.index,
        "chunk_count": count,
        "start": chunk.start,
        "end": chunk.end,
    }
    if chunk.page is not None:
        metadata["page"] = chunk.page
    if chunk.headings:
        metadata["headings"] = list(chunk.headings)
    if title is not None:
        metadata["title"] = title
    return metadata

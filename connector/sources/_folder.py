"""A folder of ``.txt`` and ``.md`` files, cut into overlapping chunks."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from connector.chunks import ChunkRecord
from connector.errors import InvalidRecord, SourceError
from connector.sources._skips import SkipLog

__all__ = ["FolderSource", "chunk_text", "validate_chunking"]

_SUFFIXES = (".txt", ".md")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\f\v]*\n\s*")
# A sentence ends at . ! or ?, optionally followed by a closing quote or bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"')\]])\s+")
_HEADING = re.compile(r"#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*")


def validate_chunking(chunk_size: int, chunk_overlap: int) -> None:
    """Check chunking settings.

    Raises:
        ValueError: ``chunk_size`` is not positive, or ``chunk_overlap`` is negative or not
            smaller than ``chunk_size``.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    if not 0 <= chunk_overlap < chunk_size:
        raise ValueError(
            f"chunk_overlap must be >= 0 and < chunk_size ({chunk_size}), got {chunk_overlap}"
        )


def chunk_text(text: str, chunk_size: int, chunk_overlap: int) -> list[str]:
    """Cut text into chunks of at most ``chunk_size`` characters.

    Paragraphs (separated by blank lines) are packed whole into chunks. A paragraph longer than
    ``chunk_size`` is cut at sentence ends, a sentence that is still too long at whitespace, and
    only a single word longer than the room left is cut mid-word. Each chunk after the first starts
    with up to ``chunk_overlap`` characters from the end of the previous one, beginning at a word
    boundary (less when the next piece would not fit otherwise).

    Args:
        text: The text to cut.
        chunk_size: Largest chunk, in characters.
        chunk_overlap: Characters repeated from the end of the previous chunk.

    Returns:
        The chunks in order; empty when the text is empty or whitespace only.

    Raises:
        ValueError: The chunking settings are invalid.
    """
    validate_chunking(chunk_size, chunk_overlap)
    # Pieces cut out of long paragraphs leave room for the overlap in front of them.
    budget = max(1, chunk_size - chunk_overlap)
    chunks: list[str] = []
    current = ""
    has_new = False  # whether `current` holds more than the overlap carried over
    for sep, piece in _pieces(text, chunk_size, budget):
        if has_new and len(current) + len(sep) + len(piece) <= chunk_size:
            current += sep + piece
            continue
        if has_new:
            chunks.append(current)
            room = chunk_size - len(piece) - len(sep)
            current = _tail(current, min(chunk_overlap, room))
        current = current + sep + piece if current else piece
        has_new = True
    if has_new:
        chunks.append(current)
    return chunks


def _pieces(text: str, chunk_size: int, budget: int) -> Iterator[tuple[str, str]]:
    """Yield ``(separator, piece)`` pairs; the separator joins the piece to the one before."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for paragraph in _PARAGRAPH_BREAK.split(text.strip()):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= chunk_size:
            yield "\n\n", paragraph
            continue
        first = True
        for sep, piece in _split_paragraph(paragraph, budget, chunk_size):
            yield ("\n\n" if first else sep), piece
            first = False


def _split_paragraph(paragraph: str, budget: int, limit: int) -> Iterator[tuple[str, str]]:
    """Cut a long paragraph at sentence ends, then at whitespace, then mid-word."""
    for sentence in _SENTENCE_END.split(paragraph):
        if len(sentence) <= budget:
            yield " ", sentence
            continue
        for word in sentence.split():
            sep = " "
            # Last resort: a word longer than a chunk is cut, rejoined without a space. No
            # overlap can start at a word boundary inside it, so its pieces may fill a chunk.
            while len(word) > limit:
                yield sep, word[:limit]
                word, sep = word[limit:], ""
            yield sep, word


def _tail(chunk: str, limit: int) -> str:
    """The last ``limit`` characters of a chunk or fewer, starting at a word boundary."""
    if limit <= 0:
        return ""
    start = max(0, len(chunk) - limit)
    if start > 0 and not chunk[start - 1].isspace():
        gap = re.search(r"\s", chunk[start:])
        if gap is None:
            return ""
        start += gap.end()
    return chunk[start:].lstrip()


def _title(text: str) -> str | None:
    first = text.lstrip().split("\n", 1)[0].rstrip()
    match = _HEADING.fullmatch(first)
    return match.group(1) if match else None


class FolderSource:
    """Every ``.txt`` and ``.md`` file under a folder, cut into chunks.

    Files are visited in order of their relative path, compared part by part; hidden files and
    folders (names starting with ``.``) are skipped. Chunk ids are ``relative/path.md#index``.

    Attributes:
        name: The source's identity; by default the folder's resolved absolute path.
        total_bytes: The summed size of the files found.
        bytes_read: Bytes of files consumed by the current iteration so far.
        skips: Files the current iteration skipped (not UTF-8); raised instead when strict.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        chunk_size: int = 1000,
        chunk_overlap: int = 200,
        strict: bool = False,
    ) -> None:
        validate_chunking(chunk_size, chunk_overlap)
        self.root = Path(path)
        if not self.root.is_dir():
            raise SourceError(str(path), "not a folder")
        self.name = name if name is not None else str(self.root.resolve())
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self._files = self._walk()
        self.total_bytes: int | None = sum(size for _, size in self._files)
        self.bytes_read = 0
        self.skips = SkipLog(strict=strict)

    def _walk(self) -> list[tuple[Path, int]]:
        found: list[tuple[Path, int]] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for filename in filenames:
                if filename.startswith(".") or not filename.lower().endswith(_SUFFIXES):
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
        self.skips.reset()
        for path, _ in self._files:
            relative = path.relative_to(self.root).as_posix()
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise SourceError(str(path), f"cannot read: {exc.strerror or exc}") from None
            self.bytes_read += len(data)
            try:
                text = data.decode("utf-8").removeprefix("\ufeff")
            except UnicodeDecodeError as exc:
                problem = f"not valid UTF-8 (byte 0x{data[exc.start]:02X} at offset {exc.start})"
                self.skips.skip(InvalidRecord(str(path), problem, kind="not_utf8"))
                continue
            chunks = chunk_text(text, self.chunk_size, self.chunk_overlap)
            title = _title(text) if path.suffix.lower() == ".md" else None
            for index, chunk in enumerate(chunks):
                metadata: dict[str, object] = {
                    "path": relative,
                    "chunk_index": index,
                    "chunk_count": len(chunks),
                }
                if title is not None:
                    metadata["title"] = title
                yield ChunkRecord(
                    text=chunk,
                    metadata=metadata,
                    chunk_id=f"{relative}#{index}",
                    location=f"{path}#{index}",
                )

"""What every reader returns, the error it raises, and the builder the readers share."""

from __future__ import annotations

from dataclasses import dataclass

from connector.errors import InvalidRecord

__all__ = [
    "INSTALL_HINT",
    "Block",
    "Document",
    "DocumentBuilder",
    "HeadingPath",
    "UnreadableDocument",
    "missing_parser",
]

INSTALL_HINT = 'pip install "qdrant-hybrid-connector[documents]"'

# Between two blocks of a document's text: a paragraph break to any chunker.
_SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class Block:
    """A run of a document's text and where it sits.

    Attributes:
        start: Offset of the block's first character in :attr:`Document.text`.
        end: Offset just past its last character.
        page: 1-based page (PDF) or slide (PPTX); ``None`` for other formats.
        headings: The heading path above the block, outermost first; a heading's own block
            ends with that heading.
    """

    start: int
    end: int
    page: int | None = None
    headings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Document:
    """A document's text, cut into blocks.

    Attributes:
        text: The whole text; consecutive blocks are separated by ``"\\n\\n"``.
        blocks: In order, non-overlapping, covering every non-blank part of :attr:`text`.
        title: The document's own title (HTML ``<title>``, DOCX/PDF metadata, first heading of
            Markdown), when it has one.
    """

    text: str
    blocks: tuple[Block, ...]
    title: str | None = None


class UnreadableDocument(InvalidRecord):
    """A file that yields no document; its ``location`` is the file's path.

    ``kind`` is one of ``unsupported_format``, ``encrypted_pdf``, ``broken_file``, ``not_utf8``,
    ``no_text`` and ``missing_parser``. The message never quotes the file's content.
    """


def missing_parser(where: str, suffix: str, package: str) -> UnreadableDocument:
    """The error of a format whose optional library is not installed."""
    return UnreadableDocument(
        where, f"reading {suffix} files needs {package}: {INSTALL_HINT}", kind="missing_parser"
    )


class DocumentBuilder:
    """Collects blocks in reading order and joins them into a :class:`Document`."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._blocks: list[Block] = []
        self._length = 0

    def add(self, text: str, *, page: int | None = None, headings: tuple[str, ...] = ()) -> None:
        """Append a block; blank text is dropped, outer whitespace trimmed."""
        text = text.strip()
        if not text:
            return
        if self._blocks:
            self._parts.append(_SEPARATOR)
            self._length += len(_SEPARATOR)
        start = self._length
        self._parts.append(text)
        self._length += len(text)
        self._blocks.append(Block(start, self._length, page, headings))

    def build(self, where: str, *, title: str | None = None, empty: str = "no text") -> Document:
        """The document.

        Raises:
            UnreadableDocument: No block was added (kind ``no_text``, message ``empty``).
        """
        if not self._blocks:
            raise UnreadableDocument(where, empty, kind="no_text")
        title = title.strip() if title else None
        return Document("".join(self._parts), tuple(self._blocks), title or None)


class HeadingPath:
    """The open headings at a point of a document, by level."""

    def __init__(self) -> None:
        self._open: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> tuple[str, ...]:
        """Open a heading of ``level`` (closing those at its level and below); its path."""
        while self._open and self._open[-1][0] >= level:
            self._open.pop()
        self._open.append((level, title))
        return self.path

    @property
    def path(self) -> tuple[str, ...]:
        """The open headings, outermost first."""
        return tuple(title for _, title in self._open)

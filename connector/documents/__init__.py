"""Documents read from their file formats into plain text with structure, offline.

Each format has its reader: PDF through pypdfium2, HTML through selectolax, DOCX through
python-docx, PPTX through python-pptx (the ``documents`` extra), Markdown and plain text by the
connector itself. A :class:`Document` is the whole text plus its :class:`Block` s (paragraphs,
headings, table rows) with their heading path and page, for a chunker to cut on structure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from connector.documents import _html, _office, _pdf, _text
from connector.documents._model import Block, Document, UnreadableDocument

__all__ = [
    "SUFFIXES",
    "Block",
    "Document",
    "UnreadableDocument",
    "parse_document",
    "read_document",
    "read_file",
]

_READERS: dict[str, Callable[[bytes, str], Document]] = {
    ".pdf": _pdf.read_pdf,
    ".html": _html.read_html,
    ".htm": _html.read_html,
    ".docx": _office.read_docx,
    ".pptx": _office.read_pptx,
    ".md": _text.read_markdown,
    ".markdown": _text.read_markdown,
    ".txt": _text.read_plain,
}

SUFFIXES: frozenset[str] = frozenset(_READERS)
"""The lower-case file suffixes :func:`read_document` reads."""


def read_document(path: Path) -> Document:
    """Read a file by its suffix (case ignored).

    Args:
        path: The file.

    Returns:
        Its text and blocks.

    Raises:
        UnreadableDocument: The suffix is not in :data:`SUFFIXES`, or the file cannot be read
            as its format (the ``kind`` says why; the location is ``path``).
        SourceError: The file cannot be opened at all (permissions, a vanished file).
    """
    return parse_document(read_file(path), path.suffix, str(path))


def read_file(path: Path) -> bytes:
    """The bytes of a file in a format :func:`parse_document` reads (checked before it is read:
    a large file of another kind is not read for nothing).

    Raises:
        UnreadableDocument: The suffix is not in :data:`SUFFIXES` (kind
            ``unsupported_format``).
        SourceError: The file cannot be opened at all (permissions, a vanished file).
    """
    where = str(path)
    _reader(path.suffix, where)
    try:
        return path.read_bytes()
    except OSError as exc:
        from connector.errors import SourceError

        raise SourceError(where, f"cannot read: {exc.strerror or exc}") from None


def parse_document(data: bytes, suffix: str, where: str) -> Document:
    """Read a document from its bytes, as :func:`read_document` reads a file.

    Args:
        data: The file's content.
        suffix: Its format as a file suffix (``".pdf"``; case ignored).
        where: Names the document in errors: a path or URL.

    Raises:
        UnreadableDocument: As :func:`read_document`.
    """
    if not data or data.isspace():
        raise UnreadableDocument(where, "empty file", kind="no_text")
    return _reader(suffix, where)(data, where)


def _reader(suffix: str, where: str) -> Callable[[bytes, str], Document]:
    reader = _READERS.get(suffix.lower())
    if reader is None:
        shown = suffix or "no suffix"
        readable = ", ".join(sorted(SUFFIXES))
        problem = f"unsupported format ({shown}; read: {readable})"
        raise UnreadableDocument(where, problem, kind="unsupported_format")
    return reader

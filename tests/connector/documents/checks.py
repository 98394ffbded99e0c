"""What every document must satisfy, and the blocks' texts to assert on."""

from __future__ import annotations

from pathlib import Path

import pytest
from fpdf import FPDF

from connector.documents import Document, UnreadableDocument, read_document


def blocks(document: Document) -> list[tuple[str, int | None, tuple[str, ...]]]:
    """Check the document's shape; its blocks as ``(text, page, headings)``.

    Blocks are in order, separated by exactly ``"\\n\\n"``, cover the text from its first
    character to its last, and each is trimmed text.
    """
    text = document.text
    assert document.blocks, "a document has at least one block"
    assert document.blocks[0].start == 0
    assert document.blocks[-1].end == len(text)
    for before, after in zip(document.blocks, document.blocks[1:], strict=False):
        assert text[before.end : after.start] == "\n\n"
    found = []
    for block in document.blocks:
        piece = text[block.start : block.end]
        assert piece and piece == piece.strip()
        found.append((piece, block.page, block.headings))
    return found


def unreadable(path: Path, kind: str) -> str:
    """Read ``path``, which must fail with ``kind`` and name the file; the error's message."""
    with pytest.raises(UnreadableDocument) as caught:
        read_document(path)
    assert (caught.value.kind, caught.value.location) == (kind, str(path))
    return str(caught.value)


def encrypted_pdf(path: Path) -> None:
    """Write a one-page PDF at ``path`` that needs a user password to open."""
    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="user")
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="classified")
    pdf.output(str(path))

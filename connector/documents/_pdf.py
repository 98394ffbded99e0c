"""PDF through pypdfium2 (PDFium, the PDF engine of Chromium): the text layer page by page,
cut into paragraphs where the gap between two lines is wider than the page's usual line step."""

from __future__ import annotations

import statistics
from typing import Any

from connector.documents._model import (
    Document,
    DocumentBuilder,
    UnreadableDocument,
    missing_parser,
)

__all__ = ["read_pdf"]

# PDFium's error code for a document that needs a password.
_PASSWORD_ERROR = 4
# A line step this much wider than the page's median starts a new paragraph.
_PARAGRAPH_GAP = 1.4


def read_pdf(data: bytes, where: str) -> Document:
    """A PDF's text layer: one block per paragraph, each with its 1-based page.

    The title is the document's metadata title, when set.

    Raises:
        UnreadableDocument: Encrypted with a user password (``encrypted_pdf``), not a PDF
            PDFium can open (``broken_file``), no text layer at all, as in a scan (``no_text``),
            or pypdfium2 missing.
    """
    try:
        import pypdfium2 as pdfium
    except ImportError:
        raise missing_parser(where, ".pdf", "pypdfium2") from None
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == _PASSWORD_ERROR:
            raise UnreadableDocument(
                where, "encrypted PDF (needs a password)", kind="encrypted_pdf"
            ) from None
        raise UnreadableDocument(where, f"not a readable PDF ({exc})", kind="broken_file") from None
    builder = DocumentBuilder()
    try:
        title = pdf.get_metadata_dict().get("Title") or None
        for number in range(1, len(pdf) + 1):
            page = pdf[number - 1]
            textpage = page.get_textpage()
            try:
                for paragraph in _paragraphs(textpage):
                    builder.add(paragraph, page=number)
            finally:
                textpage.close()
                page.close()
    except pdfium.PdfiumError as exc:
        raise UnreadableDocument(where, f"not a readable PDF ({exc})", kind="broken_file") from None
    finally:
        pdf.close()
    return builder.build(where, title=title, empty="no text layer (a scanned PDF?)")


def _paragraphs(textpage: Any) -> list[str]:
    """A page's lines, grouped into paragraphs by the vertical gaps between them."""
    text = textpage.get_text_range().replace("\r\n", "\n").replace("\r", "\n")
    lines: list[tuple[str, float | None]] = []
    offset = 0
    count = textpage.count_chars()
    # PDFium numbers the characters of the text range, line breaks included (as one "\r\n"
    # pair each, hence the +1 below): a line's first character gives its vertical position.
    for line in text.split("\n"):
        top = None
        if line.strip() and offset < count:
            first = offset + len(line) - len(line.lstrip())
            _, _, _, top = textpage.get_charbox(min(first, count - 1))
        lines.append((line, top))
        offset += len(line) + 2
    steps = [
        above[1] - below[1]
        for above, below in zip(lines, lines[1:], strict=False)
        if above[1] is not None and below[1] is not None and above[1] > below[1]
    ]
    usual = statistics.median(steps) if steps else 0.0
    paragraphs: list[list[str]] = []
    previous_top: float | None = None
    for line, top in lines:
        if not line.strip():
            previous_top = None
            if paragraphs and paragraphs[-1]:
                paragraphs.append([])
            continue
        wide = (
            previous_top is not None
            and top is not None
            and previous_top - top > usual * _PARAGRAPH_GAP
        )
        if not paragraphs or wide:
            paragraphs.append([])
        paragraphs[-1].append(line.strip())
        previous_top = top
    return ["\n".join(lines_) for lines_ in paragraphs if lines_]

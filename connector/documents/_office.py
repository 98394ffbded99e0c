"""Word (DOCX) through python-docx and PowerPoint (PPTX) through python-pptx."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

from connector.documents._model import (
    Document,
    DocumentBuilder,
    HeadingPath,
    UnreadableDocument,
    missing_parser,
)

__all__ = ["read_docx", "read_pptx"]

_HEADING_STYLE = re.compile(r"Heading ([1-9])")


def read_docx(data: bytes, where: str) -> Document:
    """A Word document: paragraphs and tables in body order.

    Paragraphs styled "Title" (level 0) or "Heading N" open the heading path; each table row is
    a block, its cells' text joined by `` | ``. The title is the core property, else the first
    "Title" paragraph.

    Raises:
        UnreadableDocument: Not a DOCX python-docx can open (``broken_file``), no text, or
            python-docx missing.
    """
    try:
        import docx
        from docx.table import Table
    except ImportError:
        raise missing_parser(where, ".docx", "python-docx") from None
    try:
        document = docx.Document(io.BytesIO(data))
        builder = DocumentBuilder()
        headings = HeadingPath()
        title = document.core_properties.title or None
        # Paragraph.style looks the default style up again on every call (quadratic in a long
        # document): read each paragraph's style id and name it from one table instead.
        style_names = {style.style_id: style.name for style in document.styles}
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                for row in item.rows:
                    builder.add(_row_text(cell.text for cell in row.cells), headings=headings.path)
                continue
            text = item.text.strip()
            level = _heading_level(style_names.get(item._p.style) or "")
            if level is None or not text:
                builder.add(text, headings=headings.path)
                continue
            builder.add(text, headings=headings.enter(level, text))
            if level == 0 and title is None:
                title = text
    except Exception as exc:  # a corrupt package fails in many ways, all of them the file's
        raise _broken(where, "DOCX", exc) from None
    return builder.build(where, title=title)


def read_pptx(data: bytes, where: str) -> Document:
    """A PowerPoint deck: each slide's text frames and table rows, with the slide's number as
    page and its title as heading.

    Raises:
        UnreadableDocument: Not a PPTX python-pptx can open (``broken_file``), no text, or
            python-pptx missing.
    """
    try:
        import pptx
    except ImportError:
        raise missing_parser(where, ".pptx", "python-pptx") from None
    try:
        deck = pptx.Presentation(io.BytesIO(data))
        builder = DocumentBuilder()
        title = deck.core_properties.title or None
        for number, slide in enumerate(deck.slides, start=1):
            heading = slide.shapes.title
            name = heading.text_frame.text.strip() if heading is not None else ""
            path = (name,) if name else ()
            for shape in _shapes(slide.shapes):
                if shape.has_text_frame:
                    builder.add(shape.text_frame.text, page=number, headings=path)
                elif getattr(shape, "has_table", False) and shape.has_table:
                    for row in shape.table.rows:
                        builder.add(
                            _row_text(cell.text for cell in row.cells), page=number, headings=path
                        )
    except Exception as exc:  # a corrupt package fails in many ways, all of them the file's
        raise _broken(where, "PPTX", exc) from None
    return builder.build(where, title=title)


def _shapes(shapes: Any) -> Iterator[Any]:
    """Every shape of a slide in order, the members of groups included."""
    stack = list(reversed(list(shapes)))
    while stack:
        shape = stack.pop()
        members = getattr(shape, "shapes", None)
        if members is not None:
            stack.extend(reversed(list(members)))
        else:
            yield shape


def _heading_level(style: str) -> int | None:
    if style == "Title":
        return 0
    match = _HEADING_STYLE.fullmatch(style)
    return int(match.group(1)) if match else None


def _row_text(cells: Iterator[str]) -> str:
    """A table row's text: its cells in order, merged cells (repeated by the library) once."""
    texts: list[str] = []
    for text in cells:
        text = " ".join(text.split())
        if text and (not texts or texts[-1] != text):
            texts.append(text)
    return " | ".join(texts)


def _broken(where: str, format_: str, exc: Exception) -> UnreadableDocument:
    # The exception's type only: a library's message may quote the file's content.
    problem = f"not a readable {format_} file ({type(exc).__name__})"
    return UnreadableDocument(where, problem, kind="broken_file")

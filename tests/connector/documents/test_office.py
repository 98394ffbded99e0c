"""Word and PowerPoint files, built by the libraries that read them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import docx
import pptx
import pytest
from pptx.util import Inches

from connector.documents import read_document
from tests.connector.documents.checks import blocks, unreadable


def test_docx_headings_give_the_path_and_table_rows_are_blocks(tmp_path: Path) -> None:
    document = docx.Document()
    document.add_heading("Handbook", level=0)  # the "Title" style
    document.add_paragraph("Opening words.")
    document.add_heading("Setup", level=1)
    document.add_paragraph("Install it.")
    document.add_paragraph("   ")
    document.add_heading("Linux", level=2)
    table = document.add_table(rows=3, cols=2)
    for row, cells in zip(table.rows, [("Name", "Value"), ("port", "6333")], strict=False):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    table.cell(2, 0).merge(table.cell(2, 1)).text = "merged  note"
    document.add_heading("Usage", level=1)
    document.add_paragraph("Run it.")
    path = tmp_path / "handbook.docx"
    document.save(str(path))

    read = read_document(path)
    assert read.title == "Handbook"
    assert blocks(read) == [
        ("Handbook", None, ("Handbook",)),
        ("Opening words.", None, ("Handbook",)),
        ("Setup", None, ("Handbook", "Setup")),
        ("Install it.", None, ("Handbook", "Setup")),
        ("Linux", None, ("Handbook", "Setup", "Linux")),
        ("Name | Value", None, ("Handbook", "Setup", "Linux")),
        ("port | 6333", None, ("Handbook", "Setup", "Linux")),
        ("merged note", None, ("Handbook", "Setup", "Linux")),
        ("Usage", None, ("Handbook", "Usage")),
        ("Run it.", None, ("Handbook", "Usage")),
    ]


def test_docx_core_title_wins(tmp_path: Path) -> None:
    document = docx.Document()
    document.core_properties.title = "Official"
    document.add_paragraph("Body.")
    path = tmp_path / "t.DOCX"
    document.save(str(path))
    assert read_document(path).title == "Official"


def test_pptx_slides_are_pages_and_their_titles_headings(tmp_path: Path) -> None:
    deck = pptx.Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])  # title and content
    first.shapes.title.text = "Roadmap"
    first.placeholders[1].text = "Ship documents.\nThen tokens."
    second = deck.slides.add_slide(deck.slide_layouts[6])  # blank: no title
    box = second.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1))
    box.text_frame.text = "Untitled slide text."
    group = second.shapes.add_group_shape()
    group.shapes.add_textbox(
        Inches(1), Inches(2), Inches(2), Inches(1)
    ).text_frame.text = "Grouped."
    table = second.shapes.add_table(1, 2, Inches(1), Inches(3), Inches(4), Inches(1)).table
    table.cell(0, 0).text = "left"
    table.cell(0, 1).text = "right"
    path = tmp_path / "deck.pptx"
    deck.save(str(path))

    read = read_document(path)
    assert read.title is None
    assert blocks(read) == [
        ("Roadmap", 1, ("Roadmap",)),
        ("Ship documents.\nThen tokens.", 1, ("Roadmap",)),
        ("Untitled slide text.", 2, ()),
        ("Grouped.", 2, ()),
        ("left | right", 2, ()),
    ]


def _zip(name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, "SECRETCONTENT")
    return buffer.getvalue()


@pytest.mark.parametrize("suffix", [".docx", ".pptx"])
@pytest.mark.parametrize("content", [b"SECRETCONTENT, not a zip", _zip("word.txt")])
def test_a_file_the_library_cannot_open_is_broken(
    tmp_path: Path, suffix: str, content: bytes
) -> None:
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(content)
    message = unreadable(path, "broken_file")
    assert message.startswith(f"{path}: not a readable {suffix[1:].upper()} file (")
    assert "SECRET" not in message


def test_an_office_file_without_text_has_no_text(tmp_path: Path) -> None:
    path = tmp_path / "blank.pptx"
    pptx.Presentation().save(str(path))
    assert unreadable(path, "no_text") == f"{path}: no text"

"""PDF: text per page, paragraphs by line gaps, and the PDFs that cannot be read."""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF

from connector.documents import read_document
from tests.connector.documents.checks import blocks, encrypted_pdf, unreadable

LONG = (
    "The first paragraph is long enough to wrap over the end of its line and go on below, "
    "so that it is one paragraph of two lines."
)


def _pdf(pages: list[str], *, title: str | None = None) -> FPDF:
    pdf = FPDF()
    if title is not None:
        pdf.set_title(title)
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 7, text)
    return pdf


def test_paragraphs_carry_their_page(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    _pdf(
        [f"{LONG}\n\nSecond paragraph.\nStill the second.", "Zebra on page two."],
        title="Annual report",
    ).output(str(path))
    document = read_document(path)
    assert document.title == "Annual report"
    found = blocks(document)
    assert [(page, text.replace("\n", " ")) for text, page, _ in found] == [
        (1, LONG),
        (1, "Second paragraph. Still the second."),
        (2, "Zebra on page two."),
    ]
    assert "\n" in found[0][0], "a wrapped paragraph keeps its line break"
    assert all(headings == () for _, _, headings in found)


def test_a_pdf_with_a_user_password_is_encrypted(tmp_path: Path) -> None:
    path = tmp_path / "secret.pdf"
    encrypted_pdf(path)
    assert unreadable(path, "encrypted_pdf") == f"{path}: encrypted PDF (needs a password)"


def test_a_pdf_with_only_an_owner_password_is_read(tmp_path: Path) -> None:
    path = tmp_path / "locked.pdf"
    pdf = FPDF()
    pdf.set_encryption(owner_password="owner")
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="printable")
    pdf.output(str(path))
    assert read_document(path).text == "printable"


def test_a_corrupt_pdf_is_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\nnot a PDF body at all\n")
    message = unreadable(path, "broken_file")
    assert message.startswith(f"{path}: not a readable PDF (")
    assert "not a PDF body" not in message


def test_a_pdf_without_a_text_layer_has_no_text(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")  # a picture of a page, no text
    pdf.output(str(path))
    assert unreadable(path, "no_text") == f"{path}: no text layer (a scanned PDF?)"

"""A folder of documents in every format, synced and searched through `connector`: each format's
text is found, script and style text is not, the PDF hit has its page, unreadable files are
reported by path and kind, and a document that shrinks loses exactly the chunks it no longer has."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docx
import pptx
from fpdf import FPDF
from pptx.util import Inches

from connector.store.edge import EdgeClient
from tests.cli import run
from tests.connector.documents.checks import encrypted_pdf

HTML = """<html><head><title>Page</title><style>.x { color: stylecolour }</style>
<script>var scriptword = 1;</script></head>
<body><nav>navword home about</nav>
<main><h1>Gliders</h1><p>The htmlterm glider soars on thermals.</p></main>
<footer>footerword</footer></body></html>"""


def _pdf(path: Path) -> None:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in ("First page about wings.", "The pdfterm appears on the second page."):
        pdf.add_page()
        pdf.multi_cell(0, 7, text)
    pdf.output(str(path))


def _docx(path: Path) -> None:
    document = docx.Document()
    document.add_heading("Manual", level=1)
    document.add_paragraph("The docxterm valve opens slowly.")
    document.save(str(path))


def _pptx(path: Path) -> None:
    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[6])
    box = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1))
    box.text_frame.text = "The pptxterm roadmap slide."
    deck.save(str(path))


def _long_markdown(sections: int) -> str:
    return "\n\n".join(
        f"## Part {n}\n\n"
        + " ".join(f"Sentence {n}.{i} about shells and panels." for i in range(40))
        for n in range(sections)
    )


def _folder(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    (docs / "page.html").write_text(HTML)
    (docs / "notes.md").write_text("# Notes\n\nThe mdterm ledger is balanced.\n")
    (docs / "plain.txt").write_text("The txtterm kettle boils.\n")
    (docs / "long.md").write_text(_long_markdown(6))
    _pdf(docs / "report.pdf")
    _docx(docs / "manual.docx")
    _pptx(docs / "deck.pptx")
    encrypted_pdf(docs / "secret.pdf")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\nthis is not a pdf at all")
    (docs / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    return docs


def _sync(capsys: Any, *flags: str) -> dict[str, Any]:
    code, out, err = run(capsys, "sync", "--source", "docs", "--json", *flags)
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _search(capsys: Any, query: str) -> list[dict[str, Any]]:
    code, out, err = run(capsys, "search", query, "--mode", "sparse", "--json", "--limit", "3")
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def _stored_ids(workdir: Path) -> set[str]:
    client = EdgeClient(workdir / ".connector" / "qdrant")
    try:
        points, _ = client.scroll("chunks", limit=10_000, with_payload=["chunk_id"])
        return {p.payload["chunk_id"] for p in points if p.payload}
    finally:
        client.close()


def test_every_format_is_found_and_unreadable_files_are_reported(
    workdir: Path, capsys: Any
) -> None:
    _folder(workdir)
    report = _sync(capsys)

    assert report["skipped_by_kind"] == {
        "broken_file": 1,
        "encrypted_pdf": 1,
        "unsupported_format": 1,
    }
    reported = {(r["location"], r["kind"]) for r in report["skipped_records"]}
    # Named as the source was given (`--source docs`).
    assert reported == {
        ("docs/broken.pdf", "broken_file"),
        ("docs/secret.pdf", "encrypted_pdf"),
        ("docs/picture.png", "unsupported_format"),
    }
    assert report["truncated"] == 0  # every chunk fits all-MiniLM-L6-v2's window

    for term, path in [
        ("htmlterm", "page.html"),
        ("mdterm", "notes.md"),
        ("txtterm", "plain.txt"),
        ("pdfterm", "report.pdf"),
        ("docxterm", "manual.docx"),
        ("pptxterm", "deck.pptx"),
    ]:
        hits = _search(capsys, term)
        assert hits and hits[0]["metadata"]["doc_id"] == path, term
        assert hits[0]["chunk_id"].startswith(f"{path}#")
    pdf_hit = _search(capsys, "pdfterm")[0]
    assert pdf_hit["metadata"]["page"] == 2
    assert _search(capsys, "docxterm")[0]["metadata"]["headings"] == ["Manual"]
    # Script, style and navigation text are not indexed.
    for term in ("scriptword", "stylecolour", "navword", "footerword"):
        assert _search(capsys, term) == [], term


def test_a_shrunk_document_loses_exactly_the_chunks_it_no_longer_has(
    workdir: Path, capsys: Any
) -> None:
    docs = _folder(workdir)
    first = _sync(capsys)
    long_ids = {i for i in _stored_ids(workdir) if i.startswith("long.md#")}
    assert len(long_ids) >= 6  # one section or more a chunk

    (docs / "long.md").write_text(_long_markdown(2))  # the first two sections, unchanged
    # A file that cannot be read this time keeps what was stored of it.
    (docs / "notes.md").write_bytes(b"The mdterm ledger \xff is not UTF-8 any more.")
    # Half of what was stored goes: over the delete guard's limit, so the user says so.
    second = _sync(capsys, "--allow-mass-delete")
    assert second["skipped_by_kind"]["not_utf8"] == 1
    kept = {i for i in _stored_ids(workdir) if i.startswith("long.md#")}
    assert kept < long_ids
    assert kept == {f"long.md#{n}" for n in range(len(kept))}
    assert second["deleted"] == len(long_ids) - len(kept)
    assert "notes.md#0" in _stored_ids(workdir)
    # Only that document's chunks were touched: the rest, and its unchanged head, are as stored.
    assert second["encoded"] == 0
    unchanged = second["skipped_unchanged"] + second["payload_only"]
    assert unchanged == first["chunks_seen"] - (len(long_ids) - len(kept)) - 1


def test_a_long_record_becomes_chunks_within_the_models_window(
    workdir: Path, capsys: Any, monkeypatch: Any
) -> None:
    from connector.chunking import TokenChunker

    words = " ".join(f"Word{i % 97} flutter." for i in range(15_000))
    (workdir / "long.jsonl").write_text(
        json.dumps({"id": "big", "text": words}) + "\n" + json.dumps({"id": "s", "text": "small"})
    )
    monkeypatch.setenv("CONNECTOR_CHUNKING__SPLIT_RECORDS", "true")  # the default
    code, out, err = run(capsys, "sync", "--source", "long.jsonl", "--json")
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["truncated"] == 0
    client = EdgeClient(workdir / ".connector" / "qdrant")
    try:
        points, _ = client.scroll("chunks", limit=10_000, with_payload=["chunk_id", "text"])
    finally:
        client.close()
    texts = {p.payload["chunk_id"]: p.payload["text"] for p in points if p.payload}
    parts = sorted((k for k in texts if k.startswith("big#")), key=lambda k: int(k[4:]))
    assert len(parts) > 50 and "s" in texts and "big" not in texts
    counter = TokenChunker.for_models({"m": "all-MiniLM-L6-v2"})
    assert all(counter.count_tokens(texts[k]) <= 254 for k in parts)

    # Left whole (records that are chunks already), the record is counted as truncated.
    monkeypatch.setenv("CONNECTOR_CHUNKING__SPLIT_RECORDS", "false")
    code, out, err = run(capsys, "sync", "--source", "long.jsonl", "--json", "--allow-mass-delete")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["truncated"] == 1

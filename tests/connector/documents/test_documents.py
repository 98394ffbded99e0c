"""Reading by suffix, from a file or from bytes, and the errors common to every format."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from connector.documents import SUFFIXES, UnreadableDocument, parse_document, read_document
from connector.errors import InvalidRecord, SourceError


def test_the_suffixes_read() -> None:
    assert SUFFIXES == {".pdf", ".html", ".htm", ".docx", ".pptx", ".md", ".markdown", ".txt"}


def test_bytes_read_the_same_as_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.Md"
    path.write_text("# Title\n\nBody.\n", encoding="utf-8")
    assert parse_document(path.read_bytes(), ".MD", "https://host/a.md") == read_document(path)


@pytest.mark.parametrize("name", ["data.xlsx", "archive.tar.gz", "Makefile"])
def test_an_unsupported_format_is_refused_unread(tmp_path: Path, name: str) -> None:
    path = tmp_path / name  # never created: the suffix alone decides
    with pytest.raises(UnreadableDocument) as caught:
        read_document(path)
    error = caught.value
    assert isinstance(error, InvalidRecord)
    assert (error.kind, error.location, error.chunk_id) == ("unsupported_format", str(path), None)
    assert str(error).startswith(f"{path}: unsupported format ({path.suffix or 'no suffix'}; read:")


@pytest.mark.parametrize(
    ("suffix", "module", "package"),
    [
        (".pdf", "pypdfium2", "pypdfium2"),
        (".html", "selectolax.lexbor", "selectolax"),
        (".docx", "docx", "python-docx"),
        (".pptx", "pptx", "python-pptx"),
    ],
)
def test_a_missing_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, suffix: str, module: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import` now fails as if not installed
    with pytest.raises(UnreadableDocument) as caught:
        parse_document(b"content", suffix, f"in/file{suffix}")
    assert caught.value.kind == "missing_parser"
    assert str(caught.value) == (
        f"in/file{suffix}: reading {suffix} files needs {package}: "
        'pip install "qdrant-hybrid-connector[documents]"'
    )


def test_empty_bytes_have_no_text_in_any_format() -> None:
    for suffix in sorted(SUFFIXES):
        with pytest.raises(UnreadableDocument, match=r"^x: empty file$") as caught:
            parse_document(b" \n", suffix, "x")
        assert caught.value.kind == "no_text"


def test_a_file_that_cannot_be_opened_is_a_source_error(tmp_path: Path) -> None:
    folder = tmp_path / "folder.md"
    folder.mkdir()
    with pytest.raises(SourceError, match=r"folder\.md: cannot read") as caught:
        read_document(folder)
    assert not isinstance(caught.value, InvalidRecord)

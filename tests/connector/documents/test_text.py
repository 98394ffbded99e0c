"""Markdown and plain text."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.documents import read_document
from tests.connector.documents.checks import blocks, unreadable

MARKDOWN = """\
# Guide

Welcome to the guide.
It spans two lines.

## Setup

Install it first.

```sh
pip install thing

pip check
```

### Details ###

Fine print.

## Usage

Run it.
"""


def test_markdown_headings_give_the_path_and_are_blocks(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    document = read_document(path)
    assert document.title == "Guide"
    assert blocks(document) == [
        ("# Guide", None, ("Guide",)),
        ("Welcome to the guide.\nIt spans two lines.", None, ("Guide",)),
        ("## Setup", None, ("Guide", "Setup")),
        ("Install it first.", None, ("Guide", "Setup")),
        ("```sh\npip install thing\n\npip check\n```", None, ("Guide", "Setup")),
        ("### Details ###", None, ("Guide", "Setup", "Details")),
        ("Fine print.", None, ("Guide", "Setup", "Details")),
        ("## Usage", None, ("Guide", "Usage")),
        ("Run it.", None, ("Guide", "Usage")),
    ]


def test_a_heading_inside_fenced_code_is_code_and_an_unclosed_fence_runs_to_the_end(
    tmp_path: Path,
) -> None:
    path = tmp_path / "code.markdown"
    path.write_bytes(b"\xef\xbb\xbfIntro\r\n\r\n~~~\r\n# not a heading\r\n")
    document = read_document(path)
    assert document.title is None
    assert blocks(document) == [("Intro", None, ()), ("~~~\n# not a heading", None, ())]


def test_plain_text_is_cut_into_paragraphs_on_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "notes.TXT"
    path.write_bytes(b"\xef\xbb\xbf  First line\nsecond line\n\n \t\n# not a heading\n\n\n")
    document = read_document(path)
    assert document.text == "First line\nsecond line\n\n# not a heading"
    assert blocks(document) == [
        ("First line\nsecond line", None, ()),
        ("# not a heading", None, ()),
    ]


@pytest.mark.parametrize("name", ["notes.txt", "notes.md"])
def test_bytes_that_are_not_utf8_are_not_utf8(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"caf\xe9 au lait")
    assert unreadable(path, "not_utf8") == f"{path}: not valid UTF-8 (byte 0xE9 at offset 3)"


@pytest.mark.parametrize("content", [b"", b" \n\t\n", b"\xef\xbb\xbf\n", b"#\n\n##  \n"])
def test_a_file_without_text_has_no_text(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.md"
    path.write_bytes(content)
    assert unreadable(path, "no_text") == f"{path}: empty file"

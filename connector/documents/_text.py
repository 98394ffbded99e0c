"""Markdown and plain text: decoded as UTF-8, cut at blank lines; Markdown's ATX headings give
the heading path and fenced code stays one block."""

from __future__ import annotations

import re

from connector.documents._model import Document, DocumentBuilder, HeadingPath, UnreadableDocument

__all__ = ["decode", "read_markdown", "read_plain"]

_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


def decode(data: bytes, where: str, encoding: str = "utf-8") -> str:
    """Decode strictly, without a byte-order mark and with ``\\n`` line ends.

    Raises:
        UnreadableDocument: The bytes are not valid in ``encoding`` (kind ``not_utf8``); the
            message names the first bad byte and its offset.
    """
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        name = "UTF-8" if encoding == "utf-8" else encoding
        problem = f"not valid {name} (byte 0x{data[exc.start]:02X} at offset {exc.start})"
        raise UnreadableDocument(where, problem, kind="not_utf8") from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def read_plain(data: bytes, where: str) -> Document:
    """A text file: one block per paragraph (lines between blank lines)."""
    builder = DocumentBuilder()
    for paragraph in _paragraphs(decode(data, where).split("\n")):
        builder.add(paragraph)
    return builder.build(where, empty="empty file")


def read_markdown(data: bytes, where: str) -> Document:
    """A Markdown file: paragraphs, headings (blocks of their own, under the heading path they
    open) and fenced code blocks kept whole, blank lines included.

    The title is the first level-1 heading.
    """
    builder = DocumentBuilder()
    headings = HeadingPath()
    title: str | None = None
    lines = decode(data, where).split("\n")
    paragraph: list[str] = []

    def flush() -> None:
        builder.add("\n".join(paragraph), headings=headings.path)
        paragraph.clear()

    index = 0
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        heading = _ATX.fullmatch(line)
        if fence:
            flush()
            end = _closing_fence(lines, index + 1, fence.group(1))
            builder.add("\n".join(lines[index : end + 1]), headings=headings.path)
            index = end + 1
            continue
        if heading:
            flush()
            text = (heading.group(2) or "").strip()
            level = len(heading.group(1))
            if text:
                builder.add(line.strip(), headings=headings.enter(level, text))
                if level == 1 and title is None:
                    title = text
        elif line.strip():
            paragraph.append(line.rstrip())
        else:
            flush()
        index += 1
    flush()
    return builder.build(where, title=title, empty="empty file")


def _closing_fence(lines: list[str], start: int, opening: str) -> int:
    """Index of the line closing a fence opened by ``opening``; the last line when unclosed."""
    for index in range(start, len(lines)):
        stripped = lines[index].strip()
        if stripped.startswith(opening[0] * len(opening)) and not stripped.strip(opening[0]):
            return index
    return len(lines) - 1


def _paragraphs(lines: list[str]) -> list[str]:
    paragraphs: list[str] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            current.append(line.rstrip())
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    return paragraphs

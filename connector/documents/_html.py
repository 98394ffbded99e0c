"""HTML through selectolax (the lexbor engine): the page's main text, none of its scripts,
styles, navigation or hidden parts."""

from __future__ import annotations

import codecs
import re
from typing import Any

from connector.documents._model import (
    Document,
    DocumentBuilder,
    HeadingPath,
    missing_parser,
)
from connector.documents._text import decode

__all__ = ["read_html"]

# Never the page's main text: code, styling, chrome around the content, and forms. Skipped
# while walking (with elements marked hidden) rather than removed from the tree first: one pass.
_DROPPED = frozenset(
    "script style noscript template nav header footer aside form iframe svg".split()
)
# Elements that end a run of text: each starts a block of its own.
_BLOCKS = frozenset(
    "address article blockquote body caption dd details div dl dt fieldset figcaption figure "
    "li main ol p pre section summary table tbody tfoot thead tr ul".split()
)
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_CELLS = frozenset({"td", "th"})
# The HTML standard looks for a declared charset in the first 1024 bytes.
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def read_html(data: bytes, where: str) -> Document:
    """An HTML page: ``<main>`` or ``<article>`` when it has one, else ``<body>``.

    Headings open the heading path; paragraphs, list items, table rows (cells joined by
    `` | ``) and other block elements become blocks; ``<title>`` is the title. Text in
    ``<pre>`` keeps its line breaks; elsewhere whitespace runs become one space.

    Raises:
        UnreadableDocument: Not decodable in its declared charset (or UTF-8), no text, or
            selectolax missing.
    """
    try:
        from selectolax.lexbor import LexborHTMLParser
    except ImportError:
        raise missing_parser(where, ".html", "selectolax") from None
    tree = LexborHTMLParser(decode(data, where, _encoding(data)))
    title_node = tree.css_first("title")
    title = _SPACES.sub(" ", title_node.text()) if title_node is not None else None
    root = tree.css_first("main") or tree.css_first("article") or tree.body
    builder = DocumentBuilder()
    if root is not None:
        _walk(root, builder)
    return builder.build(where, title=title, empty="no text in the page's main content")


def _encoding(data: bytes) -> str:
    """The page's encoding: its byte-order mark, its declared charset, else UTF-8."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    match = _CHARSET.search(data[:1024])
    if match:
        try:
            return codecs.lookup(match.group(1).decode("ascii")).name
        except LookupError:  # an unknown label is ignored, as browsers do
            pass
    return "utf-8"


def _walk(root: Any, builder: DocumentBuilder) -> None:
    """Collect ``root``'s text block by block, in document order.

    Iterative, so that deeply nested markup cannot exhaust Python's stack.
    """
    headings = HeadingPath()
    run: list[str] = []
    preformatted = 0

    def flush() -> None:
        text = "".join(run)
        builder.add(text if preformatted else _SPACES.sub(" ", text), headings=headings.path)
        run.clear()

    # Each entry is (node, entering); a node is seen again on leaving to close its block.
    stack: list[tuple[Any, bool]] = [(root, True)]
    while stack:
        node, entering = stack.pop()
        tag = node.tag
        if not entering:
            if tag in _HEADINGS:
                text = _SPACES.sub(" ", "".join(run)).strip()
                run.clear()
                if text:
                    builder.add(text, headings=headings.enter(_HEADINGS[tag], text))
                continue
            flush()
            if tag == "pre":
                preformatted -= 1
            continue
        if tag == "-text":
            run.append(node.text_content or "")
            continue
        if tag in _DROPPED or _hidden(node.attributes):
            continue
        if tag == "br":
            run.append("\n" if preformatted else " ")
            continue
        if tag in _CELLS and "".join(run).strip():
            run.append(" | ")
        elif tag in _BLOCKS or tag in _HEADINGS:
            flush()
            if tag == "pre":
                preformatted += 1
            stack.append((node, False))
        children = []
        child = node.child
        while child is not None:
            children.append((child, True))
            child = child.next
        stack.extend(reversed(children))


def _hidden(attributes: dict[str, str | None]) -> bool:
    """Whether an element is hidden from readers (``hidden``, ``aria-hidden="true"``)."""
    aria = attributes.get("aria-hidden")
    return "hidden" in attributes or (aria is not None and aria.strip().lower() == "true")

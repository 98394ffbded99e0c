"""HTML: the page's main text only."""

from __future__ import annotations

from pathlib import Path

from connector.documents import parse_document, read_document
from tests.connector.documents.checks import blocks, unreadable

# Every word in capitals is outside the main text and must not be read.
PAGE = """<!doctype html>
<html><head><title>  The
 Page </title>
<style>body { color: STYLEWORD }</style>
<script>var SCRIPTWORD = 1;</script>
</head>
<body>
<header>HEADERWORD</header>
<nav><a href="/">NAVWORD</a></nav>
<div>OUTSIDEWORD</div>
<main>
  <h1>Intro</h1>
  <p>First   paragraph,
     <b>bold</b> inside.</p>
  <noscript>NOSCRIPTWORD</noscript>
  <template><p>TEMPLATEWORD</p></template>
  <div hidden>HIDDENWORD</div>
  <span aria-hidden="true">ARIAWORD</span>
  <form><label>FORMWORD</label></form>
  <aside>ASIDEWORD</aside>
  <h2>Set<span hidden>HEADINGWORD</span>up<script>SCRIPT2WORD()</script></h2>
  <ul><li>one</li><li>two<br>lines</li></ul>
  <table><tr><th>Name</th><th>Value</th></tr><tr><td>a</td><td>1</td></tr></table>
  <pre>line 1
  line 2</pre>
  <h2>Usage</h2>
  Loose text in main.
  <!-- COMMENTWORD -->
</main>
<footer>FOOTERWORD</footer>
</body></html>
"""


def test_only_the_main_text_is_read_with_its_heading_path(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(PAGE, encoding="utf-8")
    document = read_document(path)
    assert document.title == "The Page"
    assert blocks(document) == [
        ("Intro", None, ("Intro",)),
        ("First paragraph, bold inside.", None, ("Intro",)),
        ("Setup", None, ("Intro", "Setup")),
        ("one", None, ("Intro", "Setup")),
        ("two lines", None, ("Intro", "Setup")),
        ("Name | Value", None, ("Intro", "Setup")),
        ("a | 1", None, ("Intro", "Setup")),
        ("line 1\n  line 2", None, ("Intro", "Setup")),
        ("Usage", None, ("Intro", "Usage")),
        ("Loose text in main.", None, ("Intro", "Usage")),
    ]
    assert not any(word.isupper() and word.endswith("WORD") for word in document.text.split())


def test_without_main_the_article_else_the_body_is_read() -> None:
    article = b"<body><p>around</p><article><p>inside</p></article></body>"
    assert parse_document(article, ".htm", "a.htm").text == "inside"
    body = b"<body><nav>menu</nav><section><p>kept</p>text<div>deep<div>deeper</div></div>"
    document = parse_document(body, ".HTML", "b.html")
    assert document.title is None
    assert [text for text, _, _ in blocks(document)] == ["kept", "text", "deep", "deeper"]


def test_the_declared_charset_decodes_the_page() -> None:
    page = '<meta charset="windows-1252"><p>café</p>'.encode("cp1252")
    assert parse_document(page, ".html", "p.html").text == "café"
    http_equiv = (
        '<meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1"><p>naïve</p>'
    ).encode("latin-1")
    assert parse_document(http_equiv, ".html", "p.html").text == "naïve"
    unknown = '<meta charset="no-such-codec"><p>ok ✓</p>'.encode()
    assert parse_document(unknown, ".html", "p.html").text == "ok ✓"
    utf16 = "<p>wide</p>".encode("utf-16")
    assert parse_document(utf16, ".html", "p.html").text == "wide"


def test_a_page_that_is_not_utf8_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.html"
    path.write_bytes(b"<p>caf\xe9</p>")
    assert unreadable(path, "not_utf8") == f"{path}: not valid UTF-8 (byte 0xE9 at offset 6)"


def test_a_page_with_no_main_text_has_no_text(tmp_path: Path) -> None:
    path = tmp_path / "shell.html"
    path.write_text(
        "<html><head><title>App</title><script>run()</script></head><body>"
        "<nav>menu</nav></body></html>",
        encoding="utf-8",
    )
    assert unreadable(path, "no_text") == f"{path}: no text in the page's main content"


def test_deep_nesting_does_not_exhaust_the_stack() -> None:
    page = b"<div>" * 5000 + b"<p>bottom</p>" + b"</div>" * 5000
    assert parse_document(page, ".html", "deep.html").text == "bottom"

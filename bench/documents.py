"""How fast documents are read and cut into chunks, by format, next to the tokenizer's own speed.

    python bench/documents.py [DATASET] [--kb 400] [--repeat 3]

From DATASET's abstracts (default ../shared/data/cranfield), one file of about ``--kb`` KB of
text is made per format (PDF with fpdf2, DOCX with python-docx, PPTX with python-pptx, HTML,
Markdown and text by hand; Parquet and CSV tables of the abstracts as rows). Each is read as a
sync reads it (``connector.documents.read_document``; tables through ``TableSource``), then cut
by the sync's chunker (``connector.chunking``, all-MiniLM-L6-v2's tokens: 254 a chunk, 32
shared). Printed per format, best of ``--repeat``, one core: MB/s of the file read, MB/s of text
chunked, and next to them the raw reference: the same tokenizer's own ``encode()`` of the same
text (with offsets, as the chunker encodes each section once and reads its cuts off the offsets),
and the ratio chunker/tokenizer.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from _corpus import DEFAULT_DATASET, read_docs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--kb", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from connector.chunking import TokenChunker
    from connector.chunking._models import load_tokenizer
    from connector.dense import DEFAULT_DENSE_MODEL

    docs = read_docs(args.dataset)
    abstracts = _fit(itertools.cycle([text for _, text in docs]), args.kb * 1000)
    work = Path(tempfile.mkdtemp(prefix="connector-documents-bench-"))
    chunker = TokenChunker.for_models({"m": DEFAULT_DENSE_MODEL}, overlap_tokens=32)
    tokenizer = load_tokenizer(DEFAULT_DENSE_MODEL)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    print(
        f"{len(abstracts)} abstracts of {args.dataset} ({sum(map(len, abstracts)) / 1e3:.0f} KB "
        f"of text) per format; chunks of {chunker.max_tokens} tokens, {chunker.overlap_tokens} "
        f"shared; best of {args.repeat}, one core\n"
    )
    print(
        f"{'format':>8} {'file KB':>8} {'read MB/s':>10} {'chunk MB/s':>11} "
        f"{'encode MB/s':>12} {'chunk/encode':>13} {'chunks':>7}"
    )
    for suffix, make in MAKERS.items():
        path = work / f"sample{suffix}"
        make(abstracts, path)
        size = path.stat().st_size
        read_s, document = _best(args.repeat, lambda p=path: _read(p))
        text_mb = len(document.text.encode()) / 1e6
        chunk_s, chunks = _best(args.repeat, lambda d=document: chunker.chunk_document(d))
        raw_s, _ = _best(
            args.repeat, lambda d=document: tokenizer.encode(d.text, add_special_tokens=False)
        )
        print(
            f"{suffix:>8} {size / 1e3:>8.0f} {size / 1e6 / read_s:>10.1f} "
            f"{text_mb / chunk_s:>11.2f} {text_mb / raw_s:>12.2f} {raw_s / chunk_s:>12.2f}x "
            f"{len(chunks):>7}"
        )
    for suffix, make in TABLES.items():
        path = work / f"sample{suffix}"
        make(abstracts, path)
        size = path.stat().st_size
        read_s, rows = _best(args.repeat, lambda p=path: _rows(p))
        print(
            f"{suffix:>8} {size / 1e3:>8.0f} {size / 1e6 / read_s:>10.1f} "
            f"{'(rows: records, cut when longer than the window)':>40} {rows:>7}"
        )
    _folder_workers(docs, work / "folder", chunker, args.repeat)
    return 0


def _fit(abstracts: Iterable[str], chars: int) -> list[str]:
    kept, total = [], 0
    for text in abstracts:
        if total >= chars:
            break
        kept.append(text)
        total += len(text)
    return kept


def _best(repeat: int, call: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - started)
    return best, result


def _read(path: Path) -> Any:
    from connector.documents import read_document

    return read_document(path)


def _rows(path: Path) -> int:
    from connector.sources import TableSource

    return sum(1 for _ in TableSource(path))


def _pdf(abstracts: list[str], path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=10)
    pdf.add_page()
    for text in abstracts:
        pdf.multi_cell(0, 5, text.encode("latin-1", "replace").decode("latin-1"))
        pdf.ln(3)
    pdf.output(str(path))


def _docx(abstracts: list[str], path: Path) -> None:
    import docx

    document = docx.Document()
    for number, text in enumerate(abstracts):
        if number % 10 == 0:
            document.add_heading(f"Part {number // 10}", level=1)
        document.add_paragraph(text)
    document.save(str(path))


def _pptx(abstracts: list[str], path: Path) -> None:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    for text in abstracts:
        slide = deck.slides.add_slide(deck.slide_layouts[6])
        box = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(8), Inches(5))
        box.text_frame.text = text
    deck.save(str(path))


def _html(abstracts: list[str], path: Path) -> None:
    from html import escape

    body = "".join(
        (f"<h2>Part {n // 10}</h2>" if n % 10 == 0 else "") + f"<p>{escape(text)}</p>"
        for n, text in enumerate(abstracts)
    )
    page = (
        "<html><head><title>Abstracts</title><script>var x = 1;</script></head><body>"
        f"<nav>home</nav><main>{body}</main><footer>end</footer></body></html>"
    )
    path.write_text(page, encoding="utf-8")


def _markdown(abstracts: list[str], path: Path) -> None:
    parts = [
        (f"## Part {n // 10}\n\n" if n % 10 == 0 else "") + text for n, text in enumerate(abstracts)
    ]
    path.write_text("\n\n".join(parts), encoding="utf-8")


def _text(abstracts: list[str], path: Path) -> None:
    path.write_text("\n\n".join(abstracts), encoding="utf-8")


def _csv(abstracts: list[str], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows((str(n), text) for n, text in enumerate(abstracts))


def _parquet(abstracts: list[str], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": [str(n) for n in range(len(abstracts))], "text": abstracts})
    pq.write_table(table, path, row_group_size=1024)


MAKERS: dict[str, Callable[[list[str], Path], None]] = {
    ".pdf": _pdf,
    ".html": _html,
    ".docx": _docx,
    ".pptx": _pptx,
    ".md": _markdown,
    ".txt": _text,
}
TABLES: dict[str, Callable[[list[str], Path], None]] = {".parquet": _parquet, ".csv": _csv}


FOLDER_DOCUMENTS = 100
"""Documents of the folder read by 1 and 2 worker processes, each of 10 consecutive abstracts."""


def _folder_workers(docs: list[tuple[str, str]], folder: Path, chunker: Any, repeat: int) -> None:
    """A folder of :data:`FOLDER_DOCUMENTS` documents, every format in turn, read and cut as a
    sync reads it (``FolderSource``) by 1 and 2 worker processes, the pool's start included."""
    import functools
    import os

    from connector.sources import FolderSource

    folder.mkdir()
    texts = [text for _, text in docs]
    makers = list(MAKERS.items())
    for n in range(FOLDER_DOCUMENTS):
        suffix, make = makers[n % len(makers)]
        make(texts[n * 10 % len(texts) :][:10], folder / f"doc{n:03d}{suffix}")
    size = sum(f.stat().st_size for f in folder.iterdir())
    print(
        f"\nfolder of {FOLDER_DOCUMENTS} documents of 10 abstracts, every format in turn "
        f"({size / 1e6:.1f} MB): read and chunked as a sync reads it, best of {repeat}"
    )
    speeds = {}
    for workers in (1, 2):
        source = FolderSource(folder, chunker=chunker, workers=workers)
        seconds, records = _best(repeat, functools.partial(list, source))
        speeds[workers] = size / 1e6 / seconds
        print(f"{workers:>8} worker(s) {speeds[workers]:>8.2f} MB/s {len(records):>7} chunks")
    cores = len(os.sched_getaffinity(0))
    print(f"{'2 / 1':>18} {speeds[2] / speeds[1]:>8.2f}x on {cores} cores")


if __name__ == "__main__":
    sys.exit(main())

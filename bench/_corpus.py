"""Corpus helpers shared by the benchmarks (not part of the connector)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO.parent / "shared" / "data" / "cranfield"


def corpus_file(dataset: Path) -> Path:
    """``dataset`` itself when it is a file, else its ``corpus.jsonl``."""
    path = dataset if dataset.is_file() else dataset / "corpus.jsonl"
    if not path.is_file():
        raise SystemExit(f"bench: no corpus at {path} (pass a BEIR folder or a corpus.jsonl)")
    return path


def read_docs(dataset: Path) -> list[tuple[str, str]]:
    """``(id, text)`` of every document with text; the title goes first, as the connector does."""
    docs = []
    with corpus_file(dataset).open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            obj = json.loads(line)
            text, title = obj.get("text") or "", obj.get("title") or ""
            if not text.strip():
                continue  # the connector refuses empty chunks; both sides skip them
            docs.append((str(obj.get("_id", obj.get("id"))), f"{title}\n{text}" if title else text))
    return docs


def varied(docs: list[tuple[str, str]], count: int, seed: int = 7) -> Iterator[tuple[str, str]]:
    """``count`` chunks cycled from ``docs``; each copy after the first gets its words shuffled
    a little and a copy number, so that texts (and their hashes) differ."""
    rng = random.Random(seed)
    for n in range(count):
        doc_id, text = docs[n % len(docs)]
        round_ = n // len(docs)
        if round_:
            words = text.split()
            for _ in range(max(1, len(words) // 20)):
                i, j = rng.randrange(len(words)), rng.randrange(len(words))
                words[i], words[j] = words[j], words[i]
            text = " ".join(words) + f" copy{round_}"
        yield f"{doc_id}-{round_}", text


def short_chunks(docs: list[tuple[str, str]], count: int, words: int) -> Iterator[tuple[str, str]]:
    """``count`` chunks of ``words`` words, cut in turn from the documents' running text."""
    stream = [w for _, text in docs for w in text.split()]
    for n in range(count):
        start = (n * words) % max(1, len(stream) - words)
        yield f"c{n}", " ".join(stream[start : start + words]) + f" n{n}"


def write_jsonl(chunks: Iterator[tuple[str, str]], path: Path) -> int:
    """Write ``{"id", "text"}`` lines; returns the count."""
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for chunk_id, text in chunks:
            handle.write(json.dumps({"id": chunk_id, "text": text}, ensure_ascii=False) + "\n")
            count += 1
    return count

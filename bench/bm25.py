"""qdrant-bm25 (the connector's BM25) against fastembed's Qdrant/bm25 on the same real text.

    python bench/bm25.py [DATASET] [--rounds N] [--repeat N] [--short-words N]

DATASET is a BEIR folder or a corpus.jsonl (default: ../shared/data/cranfield). Two corpora come
from it: its documents as they are, and short texts (``--short-words`` words each, default 100)
cut one after another from the stream of all its words. Runs alternate between fastembed, our
encoder, and our encoder through the public ``SparseVectorGenerator.generate`` in windows of 256
chunks as a sync calls it (both ours with empty caches), N rounds, each over a whole corpus in one
process; the medians give docs per CPU-second (the process's CPU time: per core, and steady while
other jobs share the machine) and the ratios. Then every document vector (encoder and
``generate()``) and every query vector of both are compared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _corpus import DEFAULT_DATASET, read_docs

from connector.chunks import ChunkRecord
from connector.sparse.bm25 import STOPWORDS_DIR, Bm25
from connector.sparse.generator import SparseVectorGenerator

WINDOW = 256
"""Chunks per ``generate()`` call: a sync's window."""

PATHS = ("fastembed", "encoder", "generate")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--rounds", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument("--repeat", type=int, default=1, help="corpus copies per run (default 1)")
    parser.add_argument("--batch-size", type=int, default=256, help="fastembed's batch size")
    parser.add_argument("--short-words", type=int, default=100, help="words per short text")
    args = parser.parse_args()

    try:
        from fastembed.sparse.bm25 import Bm25 as FastembedBm25
    except ImportError:
        print("bench: fastembed is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 2

    docs = [text for _, text in read_docs(args.dataset)]
    corpora = {
        "documents": docs * args.repeat,
        "short texts": short_texts(docs, args.short_words) * args.repeat,
    }
    # specific_model_path: fastembed reads its stopwords from our bundled copy, offline.
    reference = FastembedBm25(
        "Qdrant/bm25", specific_model_path=str(STOPWORDS_DIR), cache_dir=tempfile.mkdtemp()
    )
    print(f"corpus: {args.dataset}")
    for name, texts in corpora.items():
        words = sum(len(t.split()) for t in texts) / len(texts)
        print(f"  {name:<12} {len(texts):>6} texts, {words:.0f} words per text on average")
    print(
        f"{args.rounds} interleaved rounds, single process each, ours with empty caches; "
        f"generate() in windows of {WINDOW}; docs per CPU-second\n"
    )

    rates: dict[str, dict[str, list[float]]] = {c: {p: [] for p in PATHS} for c in corpora}
    runs = {name: _runs(reference, texts, args.batch_size) for name, texts in corpora.items()}
    for round_ in range(1, args.rounds + 1):
        for name, texts in corpora.items():
            for path, run in runs[name].items():
                started = time.process_time()
                run()
                rates[name][path].append(len(texts) / (time.process_time() - started))
            got = "   ".join(f"{p} {rates[name][p][-1]:>7,.0f}" for p in PATHS)
            print(f"round {round_} {name:<12} {got}")

    print()
    identical = True
    for name in corpora:
        fe, enc, gen = (statistics.median(rates[name][p]) for p in PATHS)
        print(
            f"{name:<12} median   fastembed Qdrant/bm25 {fe:>7,.0f}   "
            f"qdrant-bm25 {enc:>7,.0f} ({enc / fe:.2f}x)   "
            f"generate() {gen:>7,.0f} ({gen / fe:.2f}x)"
        )
    print()
    for name, texts in corpora.items():
        expected = [_pairs(e.indices.tolist(), e.values.tolist()) for e in reference.embed(texts)]
        by_encoder = [_pairs(v.indices, v.values) for v in Bm25().encode_documents(texts)]
        result = generate(SparseVectorGenerator(), [ChunkRecord(text=text) for text in texts])
        by_generate = [_pairs(v["indices"], v["values"]) if v else [] for v in result]
        same_enc = sum(a == b for a, b in zip(by_encoder, expected, strict=True))
        same_gen = sum(a == b for a, b in zip(by_generate, expected, strict=True))
        identical &= same_enc == same_gen == len(texts)
        print(
            f"identical output ({name}): encoder {same_enc}/{len(texts)}, "
            f"generate() {same_gen}/{len(texts)}"
        )
    queries = [text[:200] for text in docs[:500]]
    queries_same = _same_queries(reference, Bm25(), queries)
    identical &= queries_same == len(queries)
    print(f"identical output (queries): {queries_same}/{len(queries)}")
    print(f"identical output: {'yes' if identical else 'NO'}")
    return 0 if identical else 1


def short_texts(docs: list[str], words: int) -> list[str]:
    """Texts of ``words`` words, cut one after another from all of ``docs``' words in order."""
    stream = " ".join(docs).split()
    return [" ".join(stream[i : i + words]) for i in range(0, len(stream), words)]


def _runs(reference, texts: list[str], batch_size: int) -> dict[str, Callable[[], object]]:
    """The three timed paths over ``texts``; ours start with empty caches on every call."""
    chunks = [ChunkRecord(text=text) for text in texts]
    return {
        "fastembed": lambda: list(reference.embed(texts, batch_size=batch_size)),
        "encoder": lambda: Bm25().encode_documents(texts),
        "generate": lambda: generate(SparseVectorGenerator(), chunks),
    }


def generate(generator: SparseVectorGenerator, chunks: list[ChunkRecord]) -> list:
    """Every chunk's vector dict, through ``generate()`` one sync window at a time."""
    vectors: list = []
    for start in range(0, len(chunks), WINDOW):
        vectors += generator.generate(chunks[start : start + WINDOW], "qdrant-bm25").vectors
    return vectors


def _pairs(indices: list[int], values: list[float]) -> list[tuple[int, float]]:
    return sorted(zip(indices, map(float, values), strict=True))


def _same_queries(reference, ours: Bm25, texts: list[str]) -> int:
    expected = reference.query_embed(texts)
    return sum(
        _pairs(ours.encode_query(t).indices, ours.encode_query(t).values)
        == _pairs(e.indices.tolist(), e.values.tolist())
        for t, e in zip(texts, expected, strict=True)
    )


if __name__ == "__main__":
    sys.exit(main())

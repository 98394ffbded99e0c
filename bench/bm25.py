"""qdrant-bm25 (the connector's BM25) against fastembed's Qdrant/bm25 on the same real text.

    python bench/bm25.py [DATASET] [--rounds N] [--repeat N]

DATASET is a BEIR folder or a corpus.jsonl (default: ../shared/data/cranfield). Runs alternate
between the two encoders (fastembed, then ours with empty caches, N rounds), each over the whole
corpus in one process; the medians give docs/s and the ratio. Then every document vector and
every query vector of both are compared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _corpus import DEFAULT_DATASET, read_docs

from connector.sparse.bm25 import STOPWORDS_DIR, Bm25


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--rounds", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument("--repeat", type=int, default=1, help="corpus copies per run (default 1)")
    parser.add_argument("--batch-size", type=int, default=256, help="fastembed's batch size")
    args = parser.parse_args()

    try:
        from fastembed.sparse.bm25 import Bm25 as FastembedBm25
    except ImportError:
        print("bench: fastembed is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 2

    texts = [text for _, text in read_docs(args.dataset)] * args.repeat
    # specific_model_path: fastembed reads its stopwords from our bundled copy, offline.
    reference = FastembedBm25(
        "Qdrant/bm25", specific_model_path=str(STOPWORDS_DIR), cache_dir=tempfile.mkdtemp()
    )
    words = sum(len(t.split()) for t in texts) / len(texts)
    print(f"corpus: {args.dataset} — {len(texts)} docs, {words:.0f} words per doc on average")
    print(f"{args.rounds} interleaved rounds, single process each, ours with empty caches\n")

    theirs, ours = [], []
    for round_ in range(1, args.rounds + 1):
        started = time.perf_counter()
        list(reference.embed(texts, batch_size=args.batch_size))
        theirs.append(len(texts) / (time.perf_counter() - started))
        encoder = Bm25()
        started = time.perf_counter()
        encoder.encode_documents(texts)
        ours.append(len(texts) / (time.perf_counter() - started))
        print(f"round {round_}: fastembed {theirs[-1]:>9,.0f} docs/s   ours {ours[-1]:>9,.0f}")

    fe, us = statistics.median(theirs), statistics.median(ours)
    print(f"\nmedian docs/s   fastembed Qdrant/bm25 {fe:>9,.0f}   qdrant-bm25 {us:>9,.0f}")
    print(f"ratio (ours / fastembed): {us / fe:.2f}x")

    docs_same = _same_documents(reference, Bm25(), texts, args.batch_size)
    queries = [text[:200] for text in texts[:500]]
    queries_same = _same_queries(reference, Bm25(), queries)
    identical = docs_same == len(texts) and queries_same == len(queries)
    print(
        f"identical output: documents {docs_same}/{len(texts)}, queries {queries_same}/"
        f"{len(queries)} — {'yes' if identical else 'NO'}"
    )
    return 0 if identical else 1


def _pairs(indices: list[int], values: list[float]) -> list[tuple[int, float]]:
    return sorted(zip(indices, map(float, values), strict=True))


def _same_documents(reference, ours: Bm25, texts: list[str], batch_size: int) -> int:
    expected = reference.embed(texts, batch_size=batch_size)
    got = ours.encode_documents(texts)
    return sum(
        _pairs(v.indices, v.values) == _pairs(e.indices.tolist(), e.values.tolist())
        for v, e in zip(got, expected, strict=True)
    )


def _same_queries(reference, ours: Bm25, texts: list[str]) -> int:
    expected = reference.query_embed(texts)
    return sum(
        _pairs(ours.encode_query(t).indices, ours.encode_query(t).values)
        == _pairs(e.indices.tolist(), e.values.tolist())
        for t, e in zip(texts, expected, strict=True)
    )


if __name__ == "__main__":
    sys.exit(main())

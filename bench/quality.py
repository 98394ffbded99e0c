"""Retrieval quality of the connector next to a reference pipeline, on a BEIR-layout dataset.

    python bench/quality.py [DATASET_DIR] [--engine edge|local] [--feedback N]

DATASET_DIR holds corpus.jsonl, queries.jsonl and qrels/test.tsv (default:
../shared/data/cranfield). The connector syncs the corpus (dense all-MiniLM-L6-v2 + qdrant-bm25
with avg_len = "auto") and answers every query through its own search code in dense, sparse and
hybrid modes, both wired as users run them (``connector.wiring.build_syncer`` and
``build_searcher``). The reference embeds the same chunk texts with fastembed's Qdrant/bm25 and
sentence-transformers' MiniLM, stores them with qdrant-client (in memory) and fuses with Qdrant's
RRF. Both print nDCG@10 and Recall@100 (mean over the queries that have relevant documents).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from _corpus import DEFAULT_DATASET
from _retrieval import K_RECALL, evaluate, read_qrels, read_queries

from connector.sources._jsonl import parse_line

if TYPE_CHECKING:
    from connector.settings import Settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--engine", choices=["edge", "local"], default="edge")
    parser.add_argument(
        "--feedback", type=int, default=3, help="feedback docs of the extra hybrid row (default 3)"
    )
    args = parser.parse_args()
    data = args.dataset
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        if not (data / name).is_file():
            print(f"bench: {data / name} is missing (a BEIR folder is needed)", file=sys.stderr)
            return 2

    qrels = read_qrels(data / "qrels" / "test.tsv")
    queries = [q for q in read_queries(data / "queries.jsonl") if q[0] in qrels]
    work = Path(tempfile.mkdtemp(prefix="connector-quality-"))
    corpus, skipped = _connector_corpus(data / "corpus.jsonl", work / "corpus.jsonl")
    print(
        f"dataset: {data} — {len(corpus)} documents ({skipped} empty ones left out on both "
        f"sides), {len(queries)} queries with judgements\n"
    )

    ours = _ours(work, queries, args.engine, args.feedback)
    reference = _reference(corpus, queries)

    print(f"\n{'':38}{'nDCG@10':>9}{'Recall@100':>12}")
    rows: list[tuple[str, dict[str, list[str]]]] = [
        *[(f"reference {name}", runs) for name, runs in reference.items()],
        *[(f"connector {name}", runs) for name, runs in ours.items()],
    ]
    scores = {}
    for label, runs in rows:
        ndcg, recall = evaluate(runs, qrels)
        scores[label] = ndcg
        print(f"{label:38}{ndcg:>9.4f}{recall:>12.4f}")
    best_ref = scores["reference hybrid (RRF)"]
    print()
    for label in [r for r, _ in rows if r.startswith("connector hybrid")]:
        print(f"{label} − reference hybrid (RRF): {scores[label] - best_ref:+.4f} nDCG@10")
    return 0


def _ours(
    work: Path, queries: list[tuple[str, str]], engine: str, feedback: int
) -> dict[str, dict[str, list[str]]]:
    """The connector as users run it: ``build_syncer`` syncs, ``build_searcher`` answers."""
    from connector.settings import load_settings
    from connector.sources import open_source
    from connector.wiring import build_searcher, build_syncer, dense_encoders

    def settings(search: dict[str, object]) -> Settings:
        return load_settings(
            None,
            {
                "state_dir": str(work / "state"),
                "qdrant": {"engine": engine, "collection": "quality"},
                "sparse": {"bm25": {"avg_len": "auto"}},
                "search": search,
            },
        )

    dense = dense_encoders(settings({}))  # loaded once, for the sync and every search
    source = open_source(str(work / "corpus.jsonl"), name="corpus")
    with build_syncer(settings({}), source=source, dense=dense, record=False) as job:
        started = time.perf_counter()
        report = job.run()
        took = time.perf_counter() - started
        assert job.syncer.sparse is not None
        avg_len = job.syncer.sparse.options["avg_len"]
    print(
        f"connector: synced {report.writes.upserted} chunks in {took:.0f}s "
        f"(engine {engine}, BM25 avg_len measured: {avg_len})"
    )
    runs: dict[str, dict[str, list[str]]] = {}
    variants: list[tuple[str, str, dict[str, object]]] = [
        ("dense", "dense", {}),
        ("sparse (BM25)", "sparse", {}),
        ("hybrid (RRF)", "hybrid", {"fusion": "rrf"}),
        ("hybrid (DBSF, default)", "hybrid", {"fusion": "dbsf"}),
        (f"hybrid (DBSF + feedback {feedback})", "hybrid", {"feedback_docs": feedback}),
    ]
    for label, mode, search in variants:
        with build_searcher(settings(search), dense=dense) as searcher:
            runs[label] = {
                qid: [hit.chunk_id for hit in searcher.search(text, mode=mode, limit=K_RECALL)]
                for qid, text in queries
            }
    return runs


def _reference(
    corpus: list[tuple[str, str]], queries: list[tuple[str, str]]
) -> dict[str, dict[str, list[str]]]:
    """fastembed Qdrant/bm25 + sentence-transformers MiniLM + qdrant-client, Qdrant's RRF."""
    from fastembed.sparse.bm25 import Bm25
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm
    from sentence_transformers import SentenceTransformer

    from connector.dense import resolve_model_path
    from connector.sparse.bm25 import STOPWORDS_DIR

    started = time.perf_counter()
    # specific_model_path: fastembed reads its stopwords from a local folder, offline.
    bm25 = Bm25("Qdrant/bm25", specific_model_path=str(STOPWORDS_DIR), cache_dir=tempfile.mkdtemp())
    model = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu")
    texts = [text for _, text in corpus]
    dense = model.encode(texts, batch_size=32, normalize_embeddings=True)
    sparse = list(bm25.embed(texts, batch_size=256))
    client = QdrantClient(":memory:")
    client.create_collection(
        "ref",
        vectors_config={"dense": qm.VectorParams(size=dense.shape[1], distance=qm.Distance.COSINE)},
        sparse_vectors_config={"bm25": qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
    )
    client.upload_points(
        "ref",
        [
            qm.PointStruct(
                id=i,
                vector={
                    "dense": d.tolist(),
                    "bm25": qm.SparseVector(indices=s.indices.tolist(), values=s.values.tolist()),
                },
                payload={"doc": doc_id},
            )
            for i, ((doc_id, _), d, s) in enumerate(zip(corpus, dense, sparse, strict=True))
        ],
    )
    took = time.perf_counter() - started
    print(f"reference: embedded and stored {len(corpus)} chunks in {took:.0f}s")

    def ids(points) -> list[str]:
        return [p.payload["doc"] for p in points]

    def dense_q(text: str) -> list[float]:
        return model.encode([text], normalize_embeddings=True)[0].tolist()

    def sparse_q(text: str) -> qm.SparseVector:
        e = next(iter(bm25.query_embed(text)))
        return qm.SparseVector(indices=e.indices.tolist(), values=e.values.tolist())

    def run(fn: Callable[[str], list[str]]) -> dict[str, list[str]]:
        return {qid: fn(text) for qid, text in queries}

    def query(**kwargs) -> list[str]:
        return ids(client.query_points("ref", limit=K_RECALL, with_payload=True, **kwargs).points)

    return {
        "dense": run(lambda t: query(query=dense_q(t), using="dense")),
        "sparse (BM25)": run(lambda t: query(query=sparse_q(t), using="bm25")),
        "hybrid (RRF)": run(
            lambda t: query(
                prefetch=[
                    qm.Prefetch(query=dense_q(t), using="dense", limit=K_RECALL),
                    qm.Prefetch(query=sparse_q(t), using="bm25", limit=K_RECALL),
                ],
                query=qm.FusionQuery(fusion=qm.Fusion.RRF),
            )
        ),
    }


def _connector_corpus(corpus: Path, out: Path) -> tuple[list[tuple[str, str]], int]:
    """Copy the corpus less its empty documents; ``(id, text)`` as the connector reads each."""
    kept, skipped = [], 0
    with corpus.open("rb") as src, out.open("wb") as dst:
        for lineno, raw in enumerate(src, 1):
            obj = json.loads(raw) if raw.strip() else None
            if obj is None:
                continue
            if not str(obj.get("text") or "").strip():
                skipped += 1
                continue
            dst.write(raw if raw.endswith(b"\n") else raw + b"\n")
            record = parse_line(raw, f"{corpus}:{lineno}")
            assert record is not None and record.chunk_id is not None
            kept.append((record.chunk_id, record.text))
    return kept, skipped


if __name__ == "__main__":
    sys.exit(main())

"""Retrieval over long documents: chunks of the model's tokens against one point per document.

    python bench/long_documents.py [DATASET_DIR] [--per-document 10]

Cranfield made into long documents: each document is ``--per-document`` consecutive abstracts
(in corpus order, joined by blank lines), relevant to a query as its most relevant abstract is.
The same documents are synced twice as ``connector sync`` runs them (dense all-MiniLM-L6-v2 +
BM25, edge engine): once cut into chunks of the model's tokens (``chunking``'s defaults: 254
tokens, 32 shared), once one point per document (``chunking.split_records = false``: the model
reads its first 254 tokens). Every query runs through ``build_searcher`` for 100 hits in dense,
sparse and hybrid modes; the hits are turned into documents (a document ranks where its first
chunk does). Printed: nDCG@10 and Recall@100 at document level, each mode side by side, and the
difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _corpus import DEFAULT_DATASET, read_docs
from _retrieval import K_RECALL, evaluate, read_qrels, read_queries

MODES = ("dense", "sparse", "hybrid")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--per-document", type=int, default=10)
    args = parser.parse_args()
    data = args.dataset
    work = Path(tempfile.mkdtemp(prefix="connector-long-docs-"))
    owner = long_documents(data / "corpus.jsonl", work / "documents.jsonl", args.per_document)
    qrels = document_qrels(read_qrels(data / "qrels" / "test.tsv"), owner)
    queries = [q for q in read_queries(data / "queries.jsonl") if q[0] in qrels]
    documents = len(set(owner.values()))
    print(
        f"dataset: {data}: {len(owner)} abstracts in {documents} documents of "
        f"{args.per_document}; {len(queries)} queries with judgements\n"
    )
    runs = {
        "chunks of the model's tokens": search(work / "chunked", work, queries, split=True),
        "one point per document": search(work / "whole", work, queries, split=False),
    }
    print(f"\n{'mode':8}{'':34}{'nDCG@10':>9}{'Recall@100':>12}")
    scores: dict[tuple[str, str], float] = {}
    for mode in MODES:
        for label, by_mode in runs.items():
            ndcg, recall = evaluate(by_mode[mode], qrels)
            scores[label, mode] = ndcg
            print(f"{mode:8}{label:34}{ndcg:>9.4f}{recall:>12.4f}")
    print()
    for mode in MODES:
        gain = scores["chunks of the model's tokens", mode] - scores["one point per document", mode]
        print(f"{mode}: chunks − one point per document: {gain:+.4f} nDCG@10")
    return 0


def long_documents(corpus: Path, out: Path, per_document: int) -> dict[str, str]:
    """Write the long documents as JSONL records; each abstract's id → its document's id."""
    abstracts = read_docs(corpus)
    owner: dict[str, str] = {}
    with out.open("w", encoding="utf-8") as handle:
        for start in range(0, len(abstracts), per_document):
            group = abstracts[start : start + per_document]
            doc_id = f"doc{start // per_document}"
            owner.update((abstract_id, doc_id) for abstract_id, _ in group)
            text = "\n\n".join(text for _, text in group)
            handle.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    return owner


def document_qrels(
    qrels: dict[str, dict[str, int]], owner: dict[str, str]
) -> dict[str, dict[str, int]]:
    """Judgements of documents: each as relevant as its most relevant abstract."""
    judged: dict[str, dict[str, int]] = {}
    for qid, rels in qrels.items():
        docs: dict[str, int] = {}
        for abstract, grade in rels.items():
            if abstract in owner:
                docs[owner[abstract]] = max(docs.get(owner[abstract], 0), grade)
        if any(grade > 0 for grade in docs.values()):
            judged[qid] = docs
    return judged


def search(
    state: Path, work: Path, queries: list[tuple[str, str]], *, split: bool
) -> dict[str, dict[str, list[str]]]:
    """Sync the documents into a store of their own, then rank documents for every query."""
    from connector.settings import load_settings
    from connector.wiring import build_searcher, build_syncer, dense_encoders

    settings = load_settings(
        None,
        {
            "state_dir": str(state),
            "source": {"path": str(work / "documents.jsonl"), "name": "documents"},
            "chunking": {"split_records": split},
        },
    )
    dense = dense_encoders(settings)
    with build_syncer(settings, dense=dense, record=False) as job:
        started = time.perf_counter()
        report = job.run()
        took = time.perf_counter() - started
    how = "chunked" if split else "whole"
    print(
        f"{how}: {report.counts.chunks_seen} points in {took:.0f}s "
        f"({report.counts.truncated} longer than the model's window)"
    )
    runs: dict[str, dict[str, list[str]]] = {}
    with build_searcher(settings, dense=dense) as searcher:
        for mode in MODES:
            runs[mode] = {}
            for qid, text in queries:
                hits = searcher.search(text, mode=mode, limit=K_RECALL)  # type: ignore[arg-type]
                ranked = [str(hit.metadata.get("doc_id") or hit.chunk_id) for hit in hits]
                runs[mode][qid] = list(dict.fromkeys(ranked))
    return runs


if __name__ == "__main__":
    sys.exit(main())

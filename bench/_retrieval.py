"""Queries, judgements and scores of a BEIR-layout dataset, shared by the retrieval benchmarks
(not part of the connector)."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

K_NDCG, K_RECALL = 10, 100


def read_queries(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return [
            (str(obj["_id"]), obj["text"]) for obj in map(json.loads, filter(str.strip, handle))
        ]


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            qrels[row["query-id"]][row["corpus-id"]] = int(row["score"])
    return {q: rels for q, rels in qrels.items() if any(v > 0 for v in rels.values())}


def evaluate(runs: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> tuple[float, float]:
    """Mean nDCG@10 (gain = graded relevance, as trec_eval) and Recall@100."""
    ndcgs, recalls = [], []
    for qid, rels in qrels.items():
        ranked = runs.get(qid, [])
        dcg = sum(rels.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:K_NDCG]))
        ideal = sorted((v for v in rels.values() if v > 0), reverse=True)[:K_NDCG]
        idcg = sum(v / math.log2(i + 2) for i, v in enumerate(ideal))
        ndcgs.append(dcg / idcg)
        relevant = {doc for doc, v in rels.items() if v > 0}
        recalls.append(len(relevant & set(ranked[:K_RECALL])) / len(relevant))
    return sum(ndcgs) / len(ndcgs), sum(recalls) / len(recalls)

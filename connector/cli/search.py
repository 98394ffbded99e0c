"""``connector search``: one query, or a file of queries, over a synced collection."""

from __future__ import annotations

import argparse
import atexit
import gc
import json
from typing import TYPE_CHECKING

from connector.cli._args import Command, Overrides, Subparsers
from connector.errors import ConfigError

if TYPE_CHECKING:
    from connector.search import Searcher
    from connector.settings import Settings
    from connector.telemetry import Telemetry

__all__ = ["COMMAND"]


def _add_parser(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    search = commands.add_parser("search", parents=[common], help="query a synced collection")
    search.add_argument("query", metavar="QUERY", nargs="?", help="the text to look for")
    search.add_argument(
        "--queries",
        metavar="FILE",
        help="JSONL of queries ({_id, text} per line, as BEIR's queries.jsonl): one result line "
        "per query (JSON with --json, else TREC run lines)",
    )
    search.add_argument("--mode", choices=["hybrid", "dense", "sparse"], default="hybrid")
    search.add_argument("--limit", type=int, default=10, metavar="N")
    search.add_argument(
        "--fusion", choices=["dbsf", "rrf"], help="how hybrid hit lists merge (search.fusion)"
    )
    search.add_argument(
        "--feedback",
        type=int,
        metavar="N",
        help="refine the dense query with its first N hits (search.feedback_docs; 0: off)",
    )


def _overrides(args: argparse.Namespace) -> Overrides:
    return {"search": {"fusion": args.fusion, "feedback_docs": args.feedback}}


def _run(settings: Settings, args: argparse.Namespace, telemetry: Telemetry) -> int:
    from connector.wiring import build_searcher

    _leave_heap_at_exit()
    if (args.query is None) == (args.queries is None):
        raise ConfigError("search: give either QUERY or --queries FILE")
    with build_searcher(settings) as searcher:
        if args.queries is not None:
            return _search_many(searcher, args)
        hits = searcher.search(args.query, mode=args.mode, limit=args.limit)
    if args.json:
        print(json.dumps([hit.as_dict() for hit in hits], ensure_ascii=False))
        return 0
    if not hits:
        print("no hits")
    for rank, hit in enumerate(hits, 1):
        snippet = " ".join(hit.text.split())
        snippet = snippet if len(snippet) <= 100 else snippet[:99] + "…"
        print(f"{rank:>2}. {hit.score:.4f}  {hit.chunk_id}  {snippet}")
    return 0


def _leave_heap_at_exit() -> None:
    """A search process ends right after its output. At exit the collector would free the
    imported libraries' objects one by one (qdrant-client's models above all), about 0.5 s, more
    than the search; frozen, they go with the process. The store and telemetry are closed
    explicitly before then, so no finalizer is owed."""
    atexit.unregister(gc.freeze)  # once, however many searches a process runs
    atexit.register(gc.freeze)


def _search_many(searcher: Searcher, args: argparse.Namespace) -> int:
    """One line per query, in file order: JSON with --json, else TREC run format."""
    from connector.queries import read_queries

    for query in read_queries(args.queries):
        hits = searcher.search(query.text, mode=args.mode, limit=args.limit)
        if args.json:
            found = [{"chunk_id": h.chunk_id, "score": h.score, "source": h.source} for h in hits]
            print(json.dumps({"query_id": query.query_id, "hits": found}, ensure_ascii=False))
            continue
        for rank, hit in enumerate(hits, 1):
            print(f"{query.query_id} Q0 {hit.chunk_id} {rank} {hit.score:.6f} connector")
    return 0


COMMAND = Command("search", _add_parser, run=_run, overrides=_overrides)

"""The ``connector`` command: ``sync``, ``search``, ``sparse``, ``tui``, and (from
:mod:`connector.commands`) ``runs``, ``schema``, ``migrate``."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from connector import __version__
from connector.commands import COMMANDS, add_commands, run_command
from connector.errors import ConfigError, ConnectorError
from connector.redact import RedactingFilter, redact

__all__ = ["main"]

log = logging.getLogger("connector")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="PATH", help="TOML settings file (default ./connector.toml)"
    )
    common.add_argument(
        "--collection", metavar="NAME", help="Qdrant collection (qdrant.collection)"
    )
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")

    parser = argparse.ArgumentParser(
        prog="connector", description="Embed chunks of text dense and sparse into Qdrant."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sync = commands.add_parser("sync", parents=[common], help="sync a source into Qdrant")
    sync.add_argument("--source", metavar="PATH_OR_URL", help="JSONL file, folder, or http(s) URL")
    sync.add_argument(
        "--source-name", metavar="NAME", help="stable name of the source in point ids"
    )
    sync.add_argument("--batch-size", type=int, metavar="N", help="chunks encoded together")
    sync.add_argument(
        "--strict",
        action="store_true",
        help="fail on the first malformed record instead of skipping and reporting it",
    )
    sync.add_argument(
        "--allow-mass-delete",
        action="store_true",
        help="let this run delete more than sync.max_delete_fraction of the source's points",
    )
    toggle = sync.add_mutually_exclusive_group()
    toggle.add_argument("--enable-sparse", dest="sparse", action="store_true", default=None)
    toggle.add_argument("--disable-sparse", dest="sparse", action="store_false")
    device = sync.add_mutually_exclusive_group()
    device.add_argument(
        "--gpu", dest="gpu", action="store_true", default=None, help="use a leased GPU when free"
    )
    device.add_argument(
        "--cpu", dest="gpu", action="store_false", help="run every model on the CPU"
    )

    sparse = commands.add_parser(
        "sparse", parents=[common], help="switch sparse vectors on or off for the next syncs"
    )
    sparse.add_argument("state", choices=["on", "off", "status"])

    commands.add_parser(
        "tui", parents=[common], help="open the operator dashboard (runs, GPUs, sparse switch)"
    )

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
    add_commands(commands, common)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """CLI flags as a nested settings dict (flags beat environment and file)."""
    out: dict[str, Any] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            out.setdefault(section, {})[key] = value

    put("qdrant", "collection", args.collection)
    if args.command == "sync":
        put("source", "path", args.source)
        put("source", "name", args.source_name)
        put("sync", "batch_size", args.batch_size)
        if args.strict:
            put("sync", "strict", True)
        if args.allow_mass_delete:
            put("sync", "allow_mass_delete", True)
        put("gpu", "enabled", args.gpu)
    if args.command == "search":
        put("search", "fusion", args.fusion)
        put("search", "feedback_docs", args.feedback)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "schema":  # needs no settings: works beside a broken config
            return run_command(None, args)
        from connector.settings import load_settings
        from connector.telemetry import setup_telemetry

        settings = load_settings(args.config, _overrides(args))
        if args.command == "tui":  # full screen: it logs to a file, and imports Textual only now
            from tui.launch import run_dashboard

            return run_dashboard(settings, args.config)
        _setup_logging(settings.log_level)
        telemetry = setup_telemetry(settings.telemetry)
        try:
            if args.command == "sync":
                return _sync(settings, args, telemetry)
            if args.command == "sparse":
                return _sparse_switch(settings, args)
            if args.command in COMMANDS:
                return run_command(settings, args)
            return _search(settings, args)
        finally:
            telemetry.shutdown()
    except ConnectorError as exc:
        print(f"connector: error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except SystemExit as exc:
        if exc.code != 128 + signal.SIGTERM:
            raise
        print("connector: stopped by SIGTERM; the run is marked interrupted", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("connector: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`connector search ... | head`): not an error of ours. Point
        # stdout at nothing so the interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    # Model libraries chatter at INFO/WARNING about things the operator cannot act on.
    for noisy in ("sentence_transformers", "transformers", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _sync(settings: Any, args: argparse.Namespace, telemetry: Any = None) -> int:
    from connector.app import (
        dense_encoders,
        dense_stage,
        device_executor,
        device_usage,
        open_sink,
        sparse_target,
    )
    from connector.avglen import resolve_avg_len
    from connector.commands import recorded_sync
    from connector.progress import NULL_PROGRESS, TerminalProgress
    from connector.runner import Syncer
    from connector.runtime import sparse_enabled
    from connector.sources import open_source

    if not settings.source.path:
        raise ConfigError("source.path: no source given (use --source PATH_OR_URL)")
    src = settings.source
    source = open_source(
        src.path,
        name=src.name,
        chunk_size=src.chunk_size,
        chunk_overlap=src.chunk_overlap,
        timeout_s=src.timeout_s,
        retries=src.retries,
        strict=settings.sync.strict,
        max_line_bytes=src.max_line_bytes,
    )
    dense = dense_encoders(settings)
    executor = device_executor(settings, holder="connector sync")
    enabled, _ = sparse_enabled(settings.state_dir, settings.sparse.enabled, args.sparse)
    show_bar = sys.stderr.isatty() and not args.json
    sink = open_sink(settings, telemetry=telemetry)
    try:
        avg_len = resolve_avg_len(settings, sink, source) if enabled else None
        sparse = sparse_target(settings, executor, avg_len=avg_len) if enabled else None
    except BaseException:
        sink.close()
        raise
    syncer = Syncer(
        sink,
        dense,
        sparse,
        batch_size=settings.sync.batch_size,
        strict=settings.sync.strict,
        max_delete_fraction=settings.sync.max_delete_fraction,
        allow_mass_delete=settings.sync.allow_mass_delete,
        progress=TerminalProgress() if show_bar else NULL_PROGRESS,
        telemetry=telemetry,
        dense_stage=dense_stage(settings, executor),
    )
    try:
        # Creates a missing collection at the latest schema, refuses one that is behind, and
        # records the run: manifest file, runs collection, live progress.json.
        usage = functools.partial(device_usage, executor, settings.gpu)
        with recorded_sync(settings, sink, syncer, source.name, usage) as recorder:
            report = syncer.run(source, run_id=recorder.run_id)
    finally:
        sink.close()
        if syncer.report is not None:
            _print_skips(syncer.report)
    if args.json:
        print(json.dumps(report.as_dict(), sort_keys=True))
    else:
        print(
            f"synced {report.source} into {report.collection}: {report.chunks_seen} chunks, "
            f"{report.encoded} encoded, {report.skipped_unchanged} unchanged, "
            f"{report.payload_only} metadata-only, {report.deleted} deleted "
            f"in {report.duration_s:.1f}s (run {report.run_id})"
        )
    return 0


_SHOWN_SKIPS = 20


def _print_skips(report: Any) -> None:
    """The per-record report of what was skipped (all of it is in the manifest)."""
    for record in report.skipped_records[:_SHOWN_SKIPS]:
        print(f"connector: skipped {record['location']}: {record['reason']}", file=sys.stderr)
    if report.skipped:
        kinds = ", ".join(f"{kind} {count}" for kind, count in report.skipped_by_kind.items())
        more = report.skipped - min(len(report.skipped_records), _SHOWN_SKIPS)
        tail = f"; {more} more listed in the run manifest" if more > 0 else ""
        print(f"connector: {report.skipped} records skipped ({kinds}){tail}", file=sys.stderr)
    if report.deletes_deferred:
        print(f"connector: warning: {report.deletes_deferred}", file=sys.stderr)


def _sparse_switch(settings: Any, args: argparse.Namespace) -> int:
    from connector.runtime import load_runtime, save_runtime, sparse_enabled

    state = load_runtime(settings.state_dir)
    if args.state != "status":
        state.sparse_enabled = args.state == "on"
        state = save_runtime(settings.state_dir, state)
    enabled, decided_by = sparse_enabled(settings.state_dir, settings.sparse.enabled, None)
    if args.json:
        print(json.dumps({"sparse_enabled": enabled, "decided_by": decided_by}))
    else:
        print(f"sparse is {'on' if enabled else 'off'} for the next syncs ({decided_by})")
    return 0


def _search(settings: Any, args: argparse.Namespace) -> int:
    from connector.app import dense_encoders, open_sink, sparse_target
    from connector.avglen import resolve_avg_len
    from connector.search import Searcher

    if (args.query is None) == (args.queries is None):
        raise ConfigError("search: give either QUERY or --queries FILE")
    s = settings.search
    sink = open_sink(settings)
    try:
        searcher = Searcher(
            sink,
            dense_encoders(settings),
            sparse_target(settings, avg_len=resolve_avg_len(settings, sink)),
            candidates=s.candidates,
            fusion=s.fusion,
            feedback_docs=s.feedback_docs,
            feedback_weight=s.feedback_weight,
        )
        if args.queries is not None:
            return _search_many(searcher, args)
        hits = searcher.search(args.query, mode=args.mode, limit=args.limit)
    finally:
        sink.close()
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


def _search_many(searcher: Any, args: argparse.Namespace) -> int:
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


if __name__ == "__main__":
    sys.exit(main())

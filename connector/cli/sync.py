"""``connector sync``: sync a source into the collection, recorded as a run."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from connector.cli._args import Subparsers

if TYPE_CHECKING:
    from connector.pipeline import SyncReport
    from connector.settings import Settings
    from connector.telemetry import Telemetry

__all__ = ["LOGS_TO_STDERR", "NAME", "NEEDS_SETTINGS", "add_parser", "overrides", "run"]

NAME = "sync"
NEEDS_SETTINGS = True
LOGS_TO_STDERR = True
_SHOWN_SKIPS = 20


def add_parser(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    sync = commands.add_parser(NAME, parents=[common], help="sync a source into Qdrant")
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


def overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    return {
        "source": {"path": args.source, "name": args.source_name},
        "sync": {
            "batch_size": args.batch_size,
            "strict": True if args.strict else None,
            "allow_mass_delete": True if args.allow_mass_delete else None,
        },
        "gpu": {"enabled": args.gpu},
    }


def run(settings: Settings, args: argparse.Namespace, telemetry: Telemetry | None = None) -> int:
    from connector.pipeline import NULL_PROGRESS, TerminalProgress
    from connector.wiring import build_syncer

    show_bar = sys.stderr.isatty() and not args.json
    job = build_syncer(
        settings,
        sparse=args.sparse,
        telemetry=telemetry,
        progress=TerminalProgress() if show_bar else NULL_PROGRESS,
        holder="connector sync",
    )
    try:
        report = job.run()
    finally:
        job.close()
        if job.syncer.report is not None:
            _print_skips(job.syncer.report)
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


def _print_skips(report: SyncReport) -> None:
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

"""``connector sync``: sync a source into the collection, recorded as a run."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from connector.cli._args import Command, Overrides, Subparsers

if TYPE_CHECKING:
    from connector.runs.record import RunRecord
    from connector.settings import Settings
    from connector.telemetry import Telemetry

__all__ = ["COMMAND"]
_SHOWN_SKIPS = 20


def _add_parser(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    sync = commands.add_parser("sync", parents=[common], help="sync a source into Qdrant")
    sync.add_argument("--source", metavar="PATH_OR_URL", help="JSONL file, folder, or http(s) URL")
    sync.add_argument(
        "--source-name", metavar="NAME", help="stable name of the source in point ids"
    )
    sync.add_argument("--batch-size", type=int, metavar="N", help="chunks encoded together")
    sync.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes that take the CPU work: reading a folder's files, the embedded store's "
        "writer and the CPU sparse model (sync.workers; default: cores - 1 for a source over "
        "8 MiB)",
    )
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
    sync.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help="encode on a Ray cluster (compute.engine = ray): the one this machine joined "
        "(auto), HOST:PORT, ray://HOST:10001, or local (needs the ray extra)",
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


def _overrides(args: argparse.Namespace) -> Overrides:
    return {
        "source": {"path": args.source, "name": args.source_name},
        "sync": {
            "batch_size": args.batch_size,
            "workers": args.workers,
            "strict": True if args.strict else None,
            "allow_mass_delete": True if args.allow_mass_delete else None,
        },
        "gpu": {"enabled": args.gpu},
        "compute": {
            "engine": "ray" if args.ray is not None else None,
            "address": args.ray,
        },
    }


def _run(settings: Settings, args: argparse.Namespace, telemetry: Telemetry) -> int:
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
        record = job.run()
    finally:
        job.close()
        if job.syncer.record is not None:
            _print_skips(job.syncer.record)
    if args.json:
        print(json.dumps(record.report(), sort_keys=True))
    else:
        counts = record.counts
        print(
            f"synced {record.source} into {record.collection}: {counts.chunks_seen} chunks, "
            f"{counts.encoded} encoded, {counts.skipped_unchanged} unchanged, "
            f"{counts.payload_only} metadata-only, {record.writes.deleted} deleted "
            f"in {record.duration_s:.1f}s (run {record.run_id})"
        )
    return 0


def _print_skips(record: RunRecord) -> None:
    """The per-record report of what was skipped (all of it is in the manifest)."""
    skips = record.skips
    for entry in skips.records[:_SHOWN_SKIPS]:
        print(f"connector: skipped {entry['location']}: {entry['reason']}", file=sys.stderr)
    if skips.count:
        kinds = ", ".join(f"{kind} {count}" for kind, count in skips.by_kind.items())
        more = skips.count - min(len(skips.records), _SHOWN_SKIPS)
        tail = f"; {more} more listed in the run manifest" if more > 0 else ""
        print(f"connector: {skips.count} records skipped ({kinds}){tail}", file=sys.stderr)
    if skips.deletes_deferred:
        print(f"connector: warning: {skips.deletes_deferred}", file=sys.stderr)


COMMAND = Command("sync", _add_parser, run=_run, overrides=_overrides)

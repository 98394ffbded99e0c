"""``connector runs`` and ``connector runs show RUN_ID``: the recorded runs, newest first."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from connector.cli._args import Command, Subparsers
from connector.errors import ConfigError, SinkError

if TYPE_CHECKING:
    from connector.runs import ProcessingSummary, RunStore
    from connector.settings import Settings
    from connector.telemetry import Telemetry

__all__ = ["COMMAND"]
T = TypeVar("T")


def _add_parser(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    runs = commands.add_parser("runs", parents=[common], help="list recorded runs, newest first")
    runs.add_argument("--limit", type=int, default=20, metavar="N", help="runs to list")
    runs_commands = runs.add_subparsers(dest="runs_command", metavar="show RUN_ID")
    show = runs_commands.add_parser("show", parents=[common], help="print one run's manifest")
    show.add_argument("run_id", metavar="RUN_ID")


def _run(settings: Settings, args: argparse.Namespace, telemetry: Telemetry) -> int:
    if args.runs_command == "show":
        return _show_run(settings, args)
    return _list_runs(settings, args)


def _list_runs(settings: Settings, args: argparse.Namespace) -> int:
    from connector.runs.manifest import iter_summaries

    if args.limit < 1:
        from connector.errors import ConfigError

        raise ConfigError("--limit: must be at least 1")
    summaries = _from_store(settings, lambda store: store.latest(args.limit))
    if summaries is None:
        summaries = sorted(iter_summaries(settings.state_dir), key=lambda s: s.run.started_at)
        summaries = summaries[::-1][: args.limit]
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in summaries], sort_keys=True))
        return 0
    if not summaries:
        print("no runs recorded")
    for summary in summaries:
        print(_run_line(summary))
    return 0


def _run_line(summary: ProcessingSummary) -> str:
    run = summary.run
    duration = summary.performance.duration_s if summary.performance else None
    took = f"{duration:8.1f}s" if duration is not None else " " * 9
    line = (
        f"{run.id}  {run.status:<11}  {run.started_at[:19].replace('T', ' ')}  {took}  "
        f"{summary.counts.get('chunks_seen', 0):>7} chunks  v{summary.schema_version}  {run.source}"
    )
    if run.reason:
        line += f"\n    {run.reason}"
    return line


def _show_run(settings: Settings, args: argparse.Namespace) -> int:
    import uuid

    from connector.runs.manifest import ProcessingSummary, read_summary, summary_path

    try:
        args.run_id = str(uuid.UUID(args.run_id))
    except ValueError:
        raise ConfigError(f"{args.run_id!r} is not a run id (runs are named by UUID)") from None
    # The record as stored: `runs show` prints what is there, not a re-parse of it.
    record = _from_store(settings, lambda store: store.payload(args.run_id))
    if record is None:
        local = read_summary(summary_path(settings.state_dir, args.run_id))
        if local is None:
            raise ConfigError(f"run {args.run_id}: not found in the runs collection or the state")
        record = json.loads(summary_path(settings.state_dir, args.run_id).read_text())
    summary = ProcessingSummary.model_validate(record)
    print(json.dumps(record, indent=None if args.json else 2, sort_keys=True))
    if summary.run.sparse_enabled and summary.sparse_run is None:
        print(
            f"connector: warning: run {summary.run.id} had sparse enabled but its manifest has "
            "no sparse_run section",
            file=sys.stderr,
        )
    return 0


def _from_store(settings: Settings, read: Callable[[RunStore], T]) -> T | None:
    """``read(store)`` on the runs collection; ``None`` when the embedded Qdrant is held by a
    running sync (the caller falls back to the manifests in the state folder)."""
    from connector.runs import RunStore
    from connector.wiring import open_store

    try:
        store = open_store(settings)
    except SinkError:
        if settings.qdrant.url is not None:
            raise
        print(
            "connector: note: the embedded Qdrant is in use (a sync running?); "
            f"reading the manifests in {settings.state_dir / 'runs'}",
            file=sys.stderr,
        )
        return None
    try:
        return read(RunStore(store, settings.qdrant.runs_collection))
    finally:
        store.close()


COMMAND = Command("runs", _add_parser, run=_run)

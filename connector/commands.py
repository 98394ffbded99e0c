"""The ``runs``, ``schema`` and ``migrate`` commands, and the recording around ``sync``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from connector.errors import SinkError

if TYPE_CHECKING:
    from connector.manifest import DeviceUsage, ProcessingSummary
    from connector.recording import RunRecorder
    from connector.runner import Syncer
    from connector.settings import Settings
    from connector.sink import QdrantSink

__all__ = ["COMMANDS", "add_commands", "recorded_sync", "run_command"]

COMMANDS = ("runs", "schema", "migrate")


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add this module's commands to the ``connector`` parser."""
    runs = commands.add_parser("runs", parents=[common], help="list recorded runs, newest first")
    runs.add_argument("--limit", type=int, default=20, metavar="N", help="runs to list")
    runs_commands = runs.add_subparsers(dest="runs_command", metavar="show RUN_ID")
    show = runs_commands.add_parser("show", parents=[common], help="print one run's manifest")
    show.add_argument("run_id", metavar="RUN_ID")

    commands.add_parser("schema", help="print the JSON schema of processing_summary.json")

    migrate = commands.add_parser(
        "migrate", parents=[common], help="bring the collection to the latest schema"
    )
    migrate.add_argument(
        "--status", action="store_true", help="list applied and pending migrations, change nothing"
    )


def run_command(settings: Settings | None, args: argparse.Namespace) -> int:
    """Run one of :data:`COMMANDS`; returns the exit status."""
    if args.command == "schema":
        from connector.manifest import summary_json_schema

        print(json.dumps(summary_json_schema(), indent=2))
        return 0
    assert settings is not None
    if args.command == "runs":
        if args.runs_command == "show":
            return _show_run(settings, args)
        return _list_runs(settings, args)
    return _migrate(settings, args)


# -- sync ----------------------------------------------------------------------------------------


@contextmanager
def recorded_sync(
    settings: Settings,
    sink: QdrantSink,
    syncer: Syncer,
    source_name: str,
    devices: Callable[[], Sequence[DeviceUsage]] | None = None,
) -> Iterator[RunRecorder]:
    """Around one ``syncer.run``: bring a missing collection to the latest schema (refuse one
    that is behind), then record the run (manifest, runs collection, live progress).

    Raises:
        SchemaOutdated: The collection exists and its schema is behind.
    """
    from connector.app import collection_layout
    from connector.migrator import Migrator
    from connector.recording import RunRecorder
    from connector.runs import RunStore, config_digest

    runs_collection = settings.qdrant.runs_collection
    Migrator(sink, collection_layout(settings, syncer.dense), runs_collection).prepare_for_sync()
    recorder = RunRecorder(
        syncer,
        source_name,
        settings.state_dir,
        RunStore(sink, runs_collection),
        config_digest=config_digest(settings),
        devices=devices,
    )
    with recorder, _sigterm_stops():
        yield recorder


@contextmanager
def _sigterm_stops() -> Iterator[None]:
    """Let SIGTERM unwind the run (so it is recorded ``interrupted``) instead of killing it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- runs ----------------------------------------------------------------------------------------


def _list_runs(settings: Settings, args: argparse.Namespace) -> int:
    from connector.manifest import iter_summaries

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

    from connector.errors import ConfigError
    from connector.manifest import ProcessingSummary, read_summary, summary_path

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


def _from_store(settings: Settings, read: Any) -> Any:
    """``read(store)`` on the runs collection; ``None`` when the embedded Qdrant is held by a
    running sync (the caller falls back to the manifests in the state folder)."""
    from connector.app import open_sink
    from connector.runs import RunStore

    try:
        sink = open_sink(settings, settings.qdrant.runs_collection)
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
        return read(RunStore(sink, settings.qdrant.runs_collection))
    finally:
        sink.close()


# -- migrate -------------------------------------------------------------------------------------


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from connector.app import collection_layout, dense_encoders, open_sink
    from connector.migrator import Migrator

    sink = open_sink(settings)
    try:
        dense = dense_encoders(settings)
        migrator = Migrator(
            sink, collection_layout(settings, dense), settings.qdrant.runs_collection
        )
        if args.status:
            status = migrator.status()
            if args.json:
                print(json.dumps(status.as_dict(migrator.migrations), sort_keys=True))
                return 0
            _print_status(status, migrator)
            return 0

        def step(name: str, details: dict[str, Any]) -> None:
            if not args.json and name != "copied":
                print(f"rebuild: {name} {json.dumps(details, sort_keys=True)}", file=sys.stderr)

        done = migrator.migrate({e.name: e for e in dense}, on_step=step)
        status = migrator.status()
    finally:
        sink.close()
    if args.json:
        print(json.dumps({"applied": done, **status.as_dict(migrator.migrations)}, sort_keys=True))
    elif done:
        print(
            f"{status.collection}: applied {', '.join(done)}; at schema version "
            f"{len(status.applied)} of {len(migrator.migrations)}"
        )
    else:
        print(
            f"{status.collection}: already at schema version {len(status.applied)}; nothing to do"
        )
    return 0


def _print_status(status: Any, migrator: Any) -> None:
    where = status.physical if status.aliased else "no alias"
    if not status.exists:
        print(
            f"{status.collection}: does not exist (`connector sync` or `connector migrate` "
            "creates it at the latest schema)"
        )
    else:
        print(
            f"{status.collection} ({where}): schema version {len(status.applied)} of "
            f"{len(migrator.migrations)}"
        )
    for migration in migrator.migrations:
        when = status.applied.get(migration.id)
        state = f"applied {when}" if when else "pending"
        print(f"  {migration.id:<28} {state:<38} {migration.description}")
    for vector, (stored, needed) in status.rebuild.items():
        print(
            f"  rebuild pending: vector {vector!r} is {stored}-d, the configured model gives "
            f"{needed}-d"
        )

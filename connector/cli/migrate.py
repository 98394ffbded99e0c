"""``connector migrate [--status]``: bring the collection to the latest schema."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from connector.cli._args import Command, Subparsers

if TYPE_CHECKING:
    from connector.settings import Settings
    from connector.store.migrator import Migrator, SchemaStatus
    from connector.telemetry import Telemetry

__all__ = ["COMMAND"]


def _add_parser(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    migrate = commands.add_parser(
        "migrate", parents=[common], help="bring the collection to the latest schema"
    )
    migrate.add_argument(
        "--status", action="store_true", help="list applied and pending migrations, change nothing"
    )


def _run(settings: Settings, args: argparse.Namespace, telemetry: Telemetry) -> int:
    from connector.store.migrator import Migrator
    from connector.wiring import collection_layout, dense_encoders, open_store

    store = open_store(settings)
    try:
        dense = dense_encoders(settings)
        migrator = Migrator(
            store,
            settings.qdrant.collection,
            collection_layout(settings, dense),
            settings.qdrant.runs_collection,
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
        store.close()
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


def _print_status(status: SchemaStatus, migrator: Migrator) -> None:
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


COMMAND = Command("migrate", _add_parser, run=_run)

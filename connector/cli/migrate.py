"""``connector migrate [--status]``: bring the collection to the latest schema.

``connector migrate --engine edge [--replace]``: copy the local engine's store in ``qdrant.path``
into the edge engine's (see :func:`connector.store.copy_local_store`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from connector.cli._args import Command, Subparsers
from connector.errors import ConfigError

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
    migrate.add_argument(
        "--engine",
        choices=["edge"],
        help="copy the embedded store the local engine wrote in qdrant.path (collections, runs, "
        "aliases) into the edge engine's store beside it; the local data stays as it is",
    )
    migrate.add_argument(
        "--replace",
        action="store_true",
        help="with --engine: drop edge collections and aliases of the same names first",
    )


def _run(settings: Settings, args: argparse.Namespace, telemetry: Telemetry) -> int:
    if args.engine:
        return _copy_to_edge(settings, args)
    if args.replace:
        raise ConfigError("--replace goes with --engine edge")
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


def _copy_to_edge(settings: Settings, args: argparse.Namespace) -> int:
    """Copy the local engine's store into the edge engine's, and say what was copied."""
    from connector.store import CopiedCollection, Store, copy_local_store, make_client
    from connector.store.edge import EdgeClient

    q = settings.qdrant
    if q.url:
        raise ConfigError("migrate --engine: qdrant.url is set; the engines are embedded ones")
    path = settings.qdrant_path
    if not (path / "meta.json").is_file():
        raise ConfigError(f"migrate --engine edge: {path} holds no store of the local engine")
    as_local = settings.model_copy(update={"qdrant": q.model_copy(update={"engine": "local"})})
    local = Store(make_client(as_local), retries=q.retries)
    try:
        edge_client = EdgeClient(path)
        edge = Store(edge_client, retries=q.retries)
        try:

            def copied(collection: CopiedCollection) -> None:
                if not args.json:
                    print(f"copied {collection.name}: {collection.points} points")

            collections, aliases = copy_local_store(
                local,
                edge,
                edge_client.root,
                runs_collection=q.runs_collection,
                replace=args.replace,
                on_copied=copied,
            )
        finally:
            edge.close()
    finally:
        local.close()
    if args.json:
        report = {
            "collections": {c.name: c.points for c in collections},
            "aliases": aliases,
            "path": str(path),
        }
        print(json.dumps(report, sort_keys=True))
        return 0
    for alias, target in sorted(aliases.items()):
        print(f"alias {alias} -> {target}")
    print(
        f"{path}: copied {len(collections)} collections and {len(aliases)} aliases from the local "
        "engine to the edge engine; the local data is untouched (its meta.json and collection/ "
        'can be deleted once you no longer want to go back to qdrant.engine = "local")'
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

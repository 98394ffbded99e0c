"""Schema migrations of the chunk collection.

Migrations are the numbered modules of the top-level ``migrations`` package (installed with the
connector, beside the ``connector`` package): ``NNNN_name.py``, each with a docstring (its
description) and ``apply(ctx)``. They are loaded from that folder by path, so that another
``migrations`` package on ``sys.path`` (a project's own, in the working directory) cannot stand in
for them. Applied
ones are recorded in the collection's metadata under ``connector_schema``, so that applying them is
a no-op the second time. Each ``apply`` checks before it changes, so one interrupted half-way can
simply run again.

The collections the connector creates are named ``<name>__1``, ``<name>__2``, ... and reached
through an alias ``<name>``: a change Qdrant cannot make in place (a dense model of another size)
builds the next one and swaps the alias (see :mod:`connector.store._rebuild`).
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qdrant_client import models as qm

from connector.errors import ConfigError, SchemaOutdated
from connector.store._rebuild import StepCallback, rebuild_collection
from connector.store._schema import (
    CHUNK_INDEXES,
    create_aliased_chunk_collection,
    create_runs_collection,
    size_changes,
    sparse_vector_config,
)

if TYPE_CHECKING:
    from connector.dense import DenseEncoder
    from connector.store._gateway import Store
    from connector.store._schema import CollectionLayout

__all__ = [
    "MIGRATIONS_DIR",
    "SCHEMA_KEY",
    "Migration",
    "MigrationContext",
    "Migrator",
    "SchemaStatus",
    "discover",
]

log = logging.getLogger(__name__)

SCHEMA_KEY = "connector_schema"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.py$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered migration."""

    number: int
    name: str
    description: str
    apply: Callable[[MigrationContext], None]

    @property
    def id(self) -> str:
        return f"{self.number:04d}_{self.name}"


MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
"""The ``migrations`` folder beside the ``connector`` package (in the checkout, or installed)."""


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in ``directory``, in order.

    Raises:
        ConfigError: The folder is missing, a number is missing or used twice, or a module has
            no ``apply``.
    """
    if not directory.is_dir():
        raise ConfigError(f"migrations folder {directory}: not found (a broken install?)")
    found: dict[int, Migration] = {}
    for entry in sorted(directory.iterdir()):
        match = _FILE.match(entry.name)
        if match is None:
            continue
        number, name = int(match.group(1)), match.group(2)
        module = _load(entry)
        apply = getattr(module, "apply", None)
        if not callable(apply):
            raise ConfigError(f"migration {entry.name}: has no apply(ctx) function")
        if number in found:
            raise ConfigError(f"migration number {number:04d} is used twice")
        description = (module.__doc__ or name).strip().splitlines()[0]
        found[number] = Migration(number, name, description, apply)
    numbers = sorted(found)
    if numbers != list(range(1, len(numbers) + 1)):
        raise ConfigError(f"migrations must be numbered 0001, 0002, ... without gaps: {numbers}")
    return [found[n] for n in numbers]


def _load(path: Path) -> object:
    spec = importlib.util.spec_from_file_location(f"_connector_migration_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"migration {path.name}: cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(slots=True)
class MigrationContext:
    """What a migration works on: the chunk collection (by its configured name), the layout the
    configured models need, and the runs collection. Every call goes through the store."""

    store: Store
    name: str
    """The configured name: an alias, or (for collections made before aliases) the collection
    itself."""
    layout: CollectionLayout
    runs_collection: str

    def physical_name(self) -> str:
        """The collection behind the configured name."""
        return self.store.physical_name(self.name)

    def exists(self) -> bool:
        """Whether the chunk collection exists."""
        return self.store.exists(self.physical_name())

    def info(self) -> qm.CollectionInfo:
        """The chunk collection's vectors, metadata and payload indexes."""
        return self.store.info(self.physical_name())

    def create_chunk_collection(self) -> str:
        """Create ``<name>__1`` with the layout's vectors and the payload indexes, behind the
        alias ``<name>``; returns its name."""
        return create_aliased_chunk_collection(self.store, self.name, self.layout)

    def ensure_chunk_indexes(self) -> None:
        """Keyword indexes on the chunk payload keys (creating an existing one is a no-op)."""
        physical = self.physical_name()
        for key in CHUNK_INDEXES:
            self.store.create_index(physical, key, qm.PayloadSchemaType.KEYWORD)

    def ensure_runs_collection(self) -> None:
        """Create the runs collection with its payload indexes, if missing."""
        create_runs_collection(self.store, self.runs_collection)

    def add_missing_sparse_vectors(self) -> list[str]:
        """Add each sparse vector of the layout the collection lacks; returns their names."""
        physical = self.physical_name()
        params = self.info().config.params
        dense, sparse = params.vectors or {}, params.sparse_vectors or {}
        added = []
        for vector, idf in self.layout.sparse.items():
            if vector in sparse:
                continue
            if isinstance(dense, dict) and vector in dense:
                raise SchemaOutdated(
                    f"collection {physical!r}: {vector!r} is a dense vector; the sparse model "
                    "needs another sparse.vector_name"
                )
            self.store.add_vector(physical, vector, sparse_vector_config(idf))
            added.append(vector)
        return added


@dataclass(slots=True)
class SchemaStatus:
    """Where a chunk collection stands."""

    collection: str
    physical: str | None
    """The collection behind the name; ``None`` when there is none yet."""
    applied: dict[str, str]
    """Migration id → when it was applied."""
    pending: list[Migration]
    rebuild: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Dense vectors whose size differs from the configured model's: name → (stored, needed)."""

    @property
    def exists(self) -> bool:
        return self.physical is not None

    @property
    def aliased(self) -> bool:
        return self.physical is not None and self.physical != self.collection

    def as_dict(self, migrations: Sequence[Migration]) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "physical_collection": self.physical,
            "version": len(self.applied),
            "latest": len(migrations),
            "migrations": [
                {
                    "id": m.id,
                    "description": m.description,
                    "applied_at": self.applied.get(m.id),
                }
                for m in migrations
            ],
            "rebuild": {k: {"stored": a, "needed": b} for k, (a, b) in self.rebuild.items()},
        }


class Migrator:
    """Brings one chunk collection to the latest schema.

    Args:
        store: The Qdrant the collection is on.
        collection: The chunk collection's configured name.
        layout: Vectors the configured models need (sizes, sparse names and IDF).
        runs_collection: Name of the runs collection.
        migrations: Default: :func:`discover`.
    """

    def __init__(
        self,
        store: Store,
        collection: str,
        layout: CollectionLayout,
        runs_collection: str,
        migrations: Sequence[Migration] | None = None,
    ) -> None:
        self.store = store
        self.collection = collection
        self.context = MigrationContext(store, collection, layout, runs_collection)
        self.migrations = list(migrations) if migrations is not None else discover()

    def status(self) -> SchemaStatus:
        """Applied and pending migrations, and vectors that need a rebuild."""
        name = self.collection
        if not self.context.exists():
            return SchemaStatus(name, None, {}, list(self.migrations))
        physical = self.context.physical_name()
        info = self.context.info()
        applied = _applied(info.config.metadata or {})
        pending = [m for m in self.migrations if m.id not in applied]
        rebuild = size_changes(info, self.context.layout)
        return SchemaStatus(name, physical, applied, pending, rebuild)

    def migrate(
        self,
        encoders: Mapping[str, DenseEncoder] | None = None,
        on_step: StepCallback | None = None,
    ) -> list[str]:
        """Apply the pending migrations in order, then rebuild the collection if a dense vector
        changed size; returns what was done (migration ids, ``rebuild``).

        Args:
            encoders: Dense encoders by vector name, to re-encode vectors in a rebuild.
            on_step: Told about each step of a rebuild (for progress, and tests).

        Raises:
            SchemaOutdated: A rebuild is needed and no encoder was given for a changed vector.
        """
        done = []
        for migration in self.status().pending:
            log.info("applying migration %s", migration.id)
            migration.apply(self.context)
            self._record(migration)
            done.append(migration.id)
        changes = self.status().rebuild
        if changes:
            missing = sorted(set(changes) - set(encoders or {}))
            if missing:
                raise SchemaOutdated(
                    f"collection {self.collection!r}: vector {missing[0]!r} must be "
                    "re-encoded and no model for it was given"
                )
            assert encoders is not None
            rebuild_collection(
                self.store,
                self.collection,
                self.context.layout,
                {name: encoders[name] for name in changes},
                on_step=on_step,
            )
            done.append("rebuild")
        return done

    def prepare_for_sync(self) -> list[str]:
        """Before a sync: create the collection at the latest schema when there is none; refuse
        one whose schema is behind.

        Raises:
            SchemaOutdated: The collection exists and migrations are pending.
        """
        status = self.status()
        if not status.exists:
            return self.migrate()
        if status.pending:
            pending = ", ".join(m.id for m in status.pending)
            raise SchemaOutdated(
                f"collection {status.collection!r} is at schema version {len(status.applied)}, "
                f"this connector needs {len(self.migrations)} (pending: {pending}); "
                "run `connector migrate` first"
            )
        return []

    def _record(self, migration: Migration) -> None:
        physical = self.context.physical_name()
        info = self.context.info()
        record = dict((info.config.metadata or {}).get(SCHEMA_KEY) or {})
        applied = dict(record.get("applied") or {})
        # As a run's timestamps: UTC, to the millisecond.
        applied[migration.id] = datetime.now(UTC).isoformat(timespec="milliseconds")
        record = {"version": len(applied), "applied": applied}
        self.store.update_metadata(physical, {SCHEMA_KEY: record})


def _applied(metadata: Mapping[str, Any]) -> dict[str, str]:
    record = metadata.get(SCHEMA_KEY)
    if not isinstance(record, Mapping):
        return {}
    applied = record.get("applied")
    return {str(k): str(v) for k, v in applied.items()} if isinstance(applied, Mapping) else {}

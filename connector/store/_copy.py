"""Moving an embedded store from qdrant-client's local mode to the edge engine.

Both engines live in the same folder (``qdrant.path``) without reading each other's data: local
mode keeps ``meta.json`` and ``collection/`` there, the edge engine ``edge/``. Since ``edge`` became
the default, a folder written by local mode would look empty to it; :func:`local_collections_left`
finds that case, and :func:`copy_local_store` (``connector migrate --engine edge``) copies the
local store over: every collection with its vectors, payloads, metadata and payload indexes, then
the aliases. The local data is only read.

A copy can be interrupted at any point: before it creates anything it writes a journal beside the
edge collections naming what it is about to create, and removes the journal only once everything
is copied. A collection named in a journal left behind is a partial copy, dropped and copied again
by the next run; while a journal exists the local store still counts as not copied.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qdrant_client import models as qm

from connector._files import write_json_atomic
from connector.errors import SinkError
from connector.store._schema import create_chunk_collection, create_runs_collection

if TYPE_CHECKING:
    from connector.store._gateway import Store
    from connector.store.edge import EdgeClient

__all__ = ["CopiedCollection", "copy_local_store", "local_collections_left"]

log = logging.getLogger(__name__)

_JOURNAL = ".copy_from_local.json"
"""File in the edge store's root (``<qdrant.path>/edge/``) while a copy is under way."""


@dataclass(frozen=True, slots=True)
class CopiedCollection:
    """One collection copied: its name and how many points it holds."""

    name: str
    points: int


def local_collections_left(path: Path, edge: EdgeClient) -> list[str]:
    """Collections and aliases of a local-mode store in ``path`` that the edge store lacks (all
    of them while a copy is unfinished); empty when there is no local store or it was copied."""
    names = _local_names(path)
    if not names:
        return []
    if (edge.root / _JOURNAL).exists():
        return names
    return [name for name in names if not edge.collection_exists(name)]


def _local_names(path: Path) -> list[str]:
    """Collections and aliases recorded in local mode's ``meta.json`` (its own format: a missing
    or unreadable file means the folders under ``collection/`` are all there is to go by)."""
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        names = set(meta.get("collections") or {}) | set(meta.get("aliases") or {})
    except (OSError, ValueError, AttributeError):
        folder = path / "collection"
        names = {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()
    return sorted(names)


def copy_local_store(
    local: Store,
    edge: Store,
    edge_root: Path,
    *,
    runs_collection: str,
    replace: bool = False,
    page: int = 256,
    on_copied: Callable[[CopiedCollection], None] | None = None,
) -> tuple[list[CopiedCollection], dict[str, str]]:
    """Copy every collection and alias of ``local`` into ``edge``, point by point (same ids,
    vectors and payloads), ``page`` points per request; returns the collections copied and the
    aliases (alias → collection).

    Args:
        local: The local-mode store (only read).
        edge: The edge store.
        edge_root: The edge store's folder (``EdgeClient.root``), where the journal goes.
        runs_collection: The runs collection's name (it gets the runs' payload indexes; chunk
            collections get theirs).
        replace: Drop a collection or alias of the same name the edge store already holds;
            otherwise such a name is refused before anything is written.
        page: Points per read and per write.
        on_copied: Told about each collection once it is copied.

    Raises:
        SinkError: The edge store holds a name the copy needs (and ``replace`` is off).
    """
    journal = edge_root / _JOURNAL
    names = local.collections()
    aliases = local.aliases()
    unfinished = _read_journal(journal)
    taken = sorted(n for n in [*names, *aliases] if n not in unfinished and edge.exists(n))
    if taken and not replace:
        raise SinkError(
            f"the edge store already holds {', '.join(map(repr, taken))}; nothing was copied "
            "(pass --replace to drop those and copy the local ones over them)"
        )
    write_json_atomic(journal, sorted({*unfinished, *names, *aliases}))
    _drop(edge, sorted({*unfinished, *taken, *names, *aliases}))
    copied = []
    for name in sorted(names):
        count = _copy_collection(local, edge, name, runs_collection=runs_collection, page=page)
        # The engine in-process builds no index on its own: searches would scan every point.
        edge.build_index(name)
        copied.append(CopiedCollection(name, count))
        if on_copied is not None:
            on_copied(copied[-1])
    for alias, target in sorted(aliases.items()):
        edge.set_alias(alias, target)
    journal.unlink()
    return copied, aliases


def _read_journal(journal: Path) -> set[str]:
    try:
        return set(json.loads(journal.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return set()
    except (OSError, ValueError, TypeError) as exc:
        raise SinkError(f"cannot read {journal} (left by an interrupted copy): {exc}") from None


def _drop(edge: Store, names: list[str]) -> None:
    """Drop each name from ``edge``: an alias (its collection stays), or a collection with the
    aliases that point at it."""
    for name in names:
        if name in edge.aliases():  # read again: dropping a collection drops its aliases
            edge.drop_alias(name)
        elif edge.exists(name):
            edge.drop_collection(name)


def _copy_collection(
    local: Store, edge: Store, name: str, *, runs_collection: str, page: int
) -> int:
    info = local.info(name)
    config = info.config
    params = config.params
    if isinstance(params.vectors, qm.VectorParams):
        raise SinkError(
            f"collection {name!r} has an unnamed vector; the edge engine keeps named ones"
        )
    dense = params.vectors or {}
    sparse = params.sparse_vectors or {}
    metadata = dict(config.metadata or {})
    indexes = {key: _schema_type(key, schema) for key, schema in info.payload_schema.items()}
    if dense or sparse:
        create_chunk_collection(edge, name, dense, sparse, metadata=metadata, indexes=indexes)
    else:
        if name == runs_collection:
            create_runs_collection(edge, name)
        else:
            edge.create_collection(name, {})
        if metadata:
            edge.update_metadata(name, metadata)
        for key, schema in indexes.items():
            edge.create_index(name, key, schema)
    count = 0
    for records in local.pages(name, page=page, with_vectors=True):
        edge.upsert(
            name,
            [
                qm.PointStruct(id=r.id, vector=_named(r.vector), payload=r.payload or {})
                for r in records
            ],
        )
        count += len(records)
    log.info("copied collection %s (%d points)", name, count)
    return count


def _schema_type(key: str, schema: qm.PayloadIndexInfo) -> qm.PayloadSchemaType:
    try:
        return qm.PayloadSchemaType(schema.data_type)
    except ValueError:
        raise SinkError(f"payload index {key!r}: {schema.data_type} cannot be copied") from None


def _named(vector: object) -> dict[str, Any]:
    """A point's named vectors (none for a point of a payload-only collection)."""
    return dict(vector) if isinstance(vector, dict) else {}

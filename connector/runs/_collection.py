"""The runs collection: one payload-only point per run, id = run id, payload = its manifest.

A run writes its record when it starts (``running``), updates its progress as it goes, and writes it
once more when it ends (``succeeded``, ``failed`` or ``interrupted``, with the reason). A process
killed mid-way cannot do the last write; the next run finds its ``running`` record, sees that the
process is gone, and marks it ``interrupted``.

The collection also holds the sync leases of the runs going on (one point per collection and
source, ``kind = "sync_lease"``, see :class:`connector.runs.SyncLease`): they are no runs, and no
reader here returns one. Lists never meet them (a lease has neither ``run.started_at`` to order by
nor ``run.status`` to filter on); reads by id skip them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from qdrant_client import models as qm

from connector.errors import ConfigError
from connector.runs._process import process_alive
from connector.runs.manifest import ProcessingSummary, now_iso, summary_path, write_summary
from connector.store import create_runs_collection

if TYPE_CHECKING:
    from connector.settings import Settings
    from connector.store import Store

__all__ = ["RunStore", "config_digest", "mark_dead_runs"]

log = logging.getLogger(__name__)

LEASE_KIND = "sync_lease"
"""The ``kind`` of the payload of a point of the runs collection that is a sync lease, not a run."""


class RunStore:
    """Reads and writes run records.

    Args:
        store: The Qdrant the runs collection is on: the sync's own store, so that records can
            be written while its writer thread upserts chunks (the store serialises requests;
            the embedded client is not thread-safe).
        collection: Name of the runs collection.
    """

    def __init__(self, store: Store, collection: str) -> None:
        self.store = store
        self.collection = collection

    def exists(self) -> bool:
        """Whether the runs collection exists."""
        return self.store.exists(self.collection)

    def ensure(self) -> None:
        """Create the runs collection (no vectors) with its payload indexes, if missing."""
        create_runs_collection(self.store, self.collection)

    def put(self, summary: ProcessingSummary) -> None:
        """Write (or overwrite) the record of ``summary``'s run."""
        point = qm.PointStruct(
            id=summary.run.id, vector={}, payload=summary.model_dump(mode="json")
        )
        self.store.upsert(self.collection, [point])

    def get(self, run_id: str) -> ProcessingSummary | None:
        """The record of ``run_id``; ``None`` when there is none (or it is unreadable).

        Raises:
            ConfigError: ``run_id`` is not a run id (a UUID).
        """
        payload = self.payload(run_id)
        if payload is None:
            return None
        found = _summaries([qm.Record(id=run_id, payload=payload)])
        return found[0] if found else None

    def payload(self, run_id: str) -> dict[str, Any] | None:
        """The record of ``run_id`` as stored; ``None`` when there is none (a sync lease's id
        names no run).

        Raises:
            ConfigError: ``run_id`` is not a run id (a UUID).
        """
        try:
            key = str(uuid.UUID(run_id))
        except ValueError:
            raise ConfigError(f"{run_id!r} is not a run id (runs are named by UUID)") from None
        if not self.exists():
            return None
        records = self.store.retrieve(self.collection, [key], with_payload=True)
        payload = dict(records[0].payload or {}) if records else None
        return None if payload is None or payload.get("kind") == LEASE_KIND else payload

    def latest(self, limit: int = 20) -> list[ProcessingSummary]:
        """The newest ``limit`` runs, newest first."""
        if not self.exists():
            return []
        order = qm.OrderBy(key="run.started_at", direction=qm.Direction.DESC)
        records, _ = self.store.scroll(self.collection, limit=limit, order_by=order)
        return _summaries(records)

    def running(self) -> list[ProcessingSummary]:
        """Every run recorded as ``running``."""
        if not self.exists():
            return []
        flt = qm.Filter(
            must=[qm.FieldCondition(key="run.status", match=qm.MatchValue(value="running"))]
        )
        found: list[ProcessingSummary] = []
        for records in self.store.pages(self.collection, filter=flt, page=256):
            found += _summaries(records)
        return found


def _summaries(records: list[Any]) -> list[ProcessingSummary]:
    out = []
    for record in records:
        try:
            out.append(ProcessingSummary.model_validate(record.payload or {}))
        except ValidationError:
            log.warning("run record %s is not a manifest this version can read; skipped", record.id)
    return out


def mark_dead_runs(store: RunStore, state_dir: Path, noticed_by: str) -> list[str]:
    """Mark ``interrupted`` every ``running`` run whose process is gone; returns their ids.

    Runs of another host are left alone: from here there is no telling whether they still run.
    The run's manifest file, when it is in ``state_dir``, is updated too.
    """
    marked = []
    for summary in store.running():
        process = summary.run.process
        if summary.run.id == noticed_by or process is None or process_alive(process) is not False:
            continue
        run = summary.run
        run.status = "interrupted"
        # When it stopped is not known; its last progress update is the closest known time.
        run.finished_at = run.updated_at or now_iso()
        run.reason = (
            f"its process ({process.pid} on {process.host}) ended without finishing the run; "
            f"noticed by run {noticed_by}"
        )
        store.put(summary)
        if summary_path(state_dir, run.id).exists():
            write_summary(state_dir, summary)
        log.warning("run %s was left running by a process that is gone; marked interrupted", run.id)
        marked.append(run.id)
    return marked


def config_digest(settings: Settings) -> str:
    """SHA-256 of the settings, secrets left out: equal digests, equal configuration."""
    data = settings.model_dump(mode="json", exclude={"qdrant": {"api_key"}})
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()

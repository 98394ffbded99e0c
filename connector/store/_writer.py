"""A sync's side of the chunk collection: its change state, background writes and deletes."""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qdrant_client import models as qm

from connector.store._gateway import WriteCounts
from connector.store._points import PointWrite
from connector.store._schema import fit_collection
from connector.store.migrator import Migrator

if TYPE_CHECKING:
    from connector.store._gateway import Store
    from connector.store._schema import CollectionLayout

__all__ = ["PointState", "WriteBatch", "Writer", "as_uuid_int"]

log = logging.getLogger(__name__)

# Payload keys the connector owns; change detection reads only these.
STATE_KEYS = ["text_hash", "content_hash", "encoded_with"]
RUNS_COLLECTION = "connector_runs"
"""The runs collection a first sync creates when none is named (the settings' default)."""


@dataclass(frozen=True, slots=True)
class PointState:
    """What a stored point says about how it was made."""

    text_hash: str | None
    content_hash: str | None
    encoded_with: dict[str, str]


@dataclass(slots=True)
class WriteBatch:
    """Writes for one window of chunks."""

    upserts: list[PointWrite] = field(default_factory=list)
    vector_updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(point id, the named vectors to replace)."""
    payload_overwrites: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(point id, whole new payload)."""

    def __bool__(self) -> bool:
        return bool(self.upserts or self.vector_updates or self.payload_overwrites)


_STOP = object()
_IN_FLIGHT = 2
"""Write requests a writer has under way at once: while Qdrant applies one, the next is already
on its way (writes within one run touch each point once, so their order does not matter)."""


class Writer:
    """Writes one chunk collection; upserts run in background threads while the caller encodes.

    Args:
        store: The Qdrant the collection is on.
        collection: The collection's configured name (an alias, or the collection itself).
        batch_size: Points per write request.
        queue_size: Write requests that may wait; bounds memory when Qdrant is slower than encoding.
        runs_collection: The runs collection, created with the chunk collection when a first sync
            creates it (migration 0001 makes both).
    """

    def __init__(
        self,
        store: Store,
        collection: str,
        *,
        batch_size: int = 128,
        queue_size: int = 4,
        runs_collection: str = RUNS_COLLECTION,
    ) -> None:
        self.store = store
        self.collection = collection
        self.batch_size = batch_size
        self.runs_collection = runs_collection
        self.counts: WriteCounts = store.counts
        """Writes acknowledged since :meth:`begin`; the store counts its retries here too."""
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._failure: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._counting = threading.Lock()
        self._in_flight = 0
        self._busy_since = 0.0

    def begin(self, counts: WriteCounts) -> None:
        """Count the writes of a run, and the store's retries during it, into ``counts``."""
        self.counts = counts
        self.store.counts = counts

    def end(self) -> None:
        """Stop counting into the run's counts: what is written after the run (its final record,
        say) belongs to no run's figures."""
        self.begin(WriteCounts())

    # -- collection ----------------------------------------------------------------------------

    def ensure_collection(self, layout: CollectionLayout) -> None:
        """Create the collection when there is none, as ``connector sync`` does (``<name>__1``
        behind the alias ``<name>``, at the latest schema); then check and extend it to fit
        ``layout``, and record the layout's metadata on it.

        Raises:
            CollectionMismatch: A vector exists with another size or kind.
        """
        name = self.store.physical_name(self.collection)
        if not self.store.exists(name):
            Migrator(self.store, self.collection, layout, self.runs_collection).prepare_for_sync()
            name = self.store.physical_name(self.collection)
        fit_collection(self.store, name, layout)
        self.store.fit_index(name)

    def defer_index(self) -> bool:
        """Turn the collection's HNSW graph off while a first sync loads it, when it is empty
        (:meth:`Store.defer_index`); whether it did."""
        return self.store.defer_index(self.collection)

    def build_index(self, *, build: bool = True) -> None:
        """Give the collection its configured index back after a run and, with ``build``, build
        it now where the engine would not on its own (:meth:`Store.build_index`)."""
        self.store.build_index(self.collection, build=build)

    # -- change state --------------------------------------------------------------------------

    def fetch_state(self, ids: Sequence[str]) -> dict[str, PointState]:
        """How each of ``ids`` that exists was made."""
        records = self.store.retrieve(self.collection, ids, with_payload=STATE_KEYS)
        states = {}
        for record in records:
            payload = record.payload or {}
            states[str(record.id)] = PointState(
                text_hash=payload.get("text_hash"),
                content_hash=payload.get("content_hash"),
                encoded_with=dict(payload.get("encoded_with") or {}),
            )
        return states

    # -- writes --------------------------------------------------------------------------------

    def submit(self, batch: WriteBatch) -> None:
        """Queue ``batch`` for writing; blocks while the queue is full.

        Raises:
            ConnectorError: An earlier write failed (the writer stops at the first failure).
        """
        self._raise_failure()
        if not batch:
            return
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._drain, name=f"qdrant-writer-{n}", daemon=True)
                for n in range(_IN_FLIGHT)
            ]
            for thread in self._threads:
                thread.start()
        # The writer thread parents its `upsert` spans on the caller's span.
        parent = self.store.telemetry.context()
        for request in self._split(batch):
            while True:
                try:
                    self._queue.put((request, parent), timeout=0.5)
                    break
                except queue.Full:
                    self._raise_failure()

    @contextmanager
    def in_writer_process(self) -> Iterator[bool]:
        """While the block runs, this writer's reads and writes go to a process that holds the
        collection alone (the embedded engine: see :meth:`Store.in_writer_process`); whether
        they do. Queued writes are sent before the collection comes back."""
        with self.store.in_writer_process(self.collection) as moved:
            try:
                yield moved
            finally:
                self._stop()

    def flush(self) -> None:
        """Wait until every queued write is acknowledged, then raise the first failure, if any."""
        self._stop()
        self._raise_failure()

    def close(self) -> None:
        """Stop the writer thread, dropping nothing already queued (the store stays open)."""
        self._stop()

    def _stop(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def _split(self, batch: WriteBatch) -> Iterator[WriteBatch]:
        size = self.batch_size
        for start in range(0, len(batch.upserts), size):
            yield WriteBatch(upserts=batch.upserts[start : start + size])
        for start in range(0, len(batch.vector_updates), size):
            yield WriteBatch(vector_updates=batch.vector_updates[start : start + size])
        for start in range(0, len(batch.payload_overwrites), size):
            yield WriteBatch(payload_overwrites=batch.payload_overwrites[start : start + size])

    def _drain(self) -> None:
        while True:
            request = self._queue.get()
            if request is _STOP:
                return
            if self._failure is not None:
                continue  # drop the rest: the run is failing and will say why
            batch, parent = request
            try:
                self._write(batch, parent)
            except BaseException as exc:  # handed to the caller's thread
                self._failure = exc

    def _write(self, batch: WriteBatch, parent: object | None = None) -> None:
        telemetry = self.store.telemetry
        attributes = {
            "points": len(batch.upserts),
            "vector_updates": len(batch.vector_updates),
            "payload_updates": len(batch.payload_overwrites),
        }
        started = self._started()
        try:
            with telemetry.span("upsert", attributes, parent=parent) as span:
                self._send(batch)
                latency = (time.perf_counter() - started) * 1000
                span.set_attribute("latency_ms", round(latency, 3))
        finally:
            self._ended()
        telemetry.record_stage("upsert", latency)

    def _started(self) -> float:
        now = time.perf_counter()
        with self._counting:
            if not self._in_flight:
                self._busy_since = now
            self._in_flight += 1
        return now

    def _ended(self) -> None:
        """``write_ms`` counts the time any write was under way, not each request's."""
        now = time.perf_counter()
        with self._counting:
            self._in_flight -= 1
            if not self._in_flight:
                self.counts.write_ms += (now - self._busy_since) * 1000

    def _send(self, batch: WriteBatch) -> None:
        if batch.upserts:
            self.store.write_points(self.collection, batch.upserts)
            self._count("upserted", len(batch.upserts))
        if batch.vector_updates:
            self.store.write_vectors(self.collection, batch.vector_updates)
            self._count("vectors_updated", len(batch.vector_updates))
        if batch.payload_overwrites:
            self.store.overwrite_payloads(self.collection, batch.payload_overwrites)
            self._count("payloads_updated", len(batch.payload_overwrites))
        self._count("requests", 1)

    def _count(self, what: str, n: int) -> None:
        with self._counting:
            setattr(self.counts, what, getattr(self.counts, what) + n)

    # -- deletes -------------------------------------------------------------------------------

    def stored_ids(
        self, source: str, page: int = 1000, document: str | None = None
    ) -> Iterator[str]:
        """Ids of every stored point of ``source`` (of its ``document`` alone, when given: the
        chunks whose ``metadata.doc_id`` it is)."""
        conditions = [qm.FieldCondition(key="source", match=qm.MatchValue(value=source))]
        if document is not None:
            conditions.append(
                qm.FieldCondition(key="metadata.doc_id", match=qm.MatchValue(value=document))
            )
        flt = qm.Filter(must=list(conditions))
        for records in self.store.pages(self.collection, filter=flt, page=page, with_payload=False):
            for record in records:
                yield str(record.id)

    def delete(self, ids: Sequence[str]) -> None:
        """Delete ``ids`` (already flushed writes stay)."""
        for start in range(0, len(ids), self.batch_size):
            part = ids[start : start + self.batch_size]
            self.store.delete(self.collection, part)
            self.counts.deleted += len(part)


def as_uuid_int(point: str) -> int:
    """A compact form of a point id, for sets that hold a whole source's ids."""
    return uuid.UUID(point).int

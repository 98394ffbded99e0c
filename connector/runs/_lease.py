"""One sync of a source at a time, across hosts: a lease on (collection, source) in the runs
collection.

Two syncs of one source that overlap delete each other's work: each deletes, after its read, the
points it did not see, among them those the other one just wrote. So a run first claims the lease:
one payload-only point of the runs collection per (collection, source), its id derived from both,
naming its holder (host, pid, run id), since when it holds it and until when. A daemon thread
renews it every third of its time to live; the run deletes it when it ends, however it ends. A
holder that died stops renewing, and its lease lapses; on the holder's own host a dead process is
seen at once, so a sync killed there does not keep the next one out until then.

Qdrant has no compare-and-set. A claim is written, then, after a short wait (``settle_s``), read
back: of two claims that cross, the later write is the one read back by both, and the earlier
claimant stops. What is left is narrower: a claim written after the other claimant has read back
its own (a read that took longer than the wait, say). Then both runs go on; the first heartbeat of
the one overwritten finds the other's claim and marks the lease lost, and :meth:`SyncLease.check`,
called right before a run deletes anything, reads the lease again: at most one of the two
deletes. Expiry is judged by the reader's clock against the holder's: hosts' clocks must agree to
well within the time to live.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from qdrant_client import models as qm

from connector.errors import ConnectorError, SyncInProgress
from connector.runs._collection import LEASE_KIND
from connector.runs._process import process_alive, this_process
from connector.runs.manifest import ProcessInfo, iso, parse_time

if TYPE_CHECKING:
    from connector.runs._collection import RunStore

__all__ = ["SyncLease"]

log = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("5b7f3a0e-2c1d-4e8a-9f61-0d3c7b9a4e21")
"""Of the lease points' ids (uuid5): fixed, so that every host derives the same id."""


class SyncLease:
    """The lease of one run on syncing ``source`` into ``collection``; a context manager that
    takes it on entering and releases it on leaving.

    Args:
        runs: The runs collection the lease point lives in.
        collection: The collection the run writes (as configured: an alias is one collection).
        source: The source's name.
        run_id: The run that holds it.
        ttl_s: How long the lease holds without being renewed; renewed every third of it.
        settle_s: How long to wait between writing a claim and reading it back (0: no wait,
            where no other process can write meanwhile: the embedded store).
        process: The holder's process; default: this one.
    """

    def __init__(
        self,
        runs: RunStore,
        collection: str,
        source: str,
        run_id: str,
        *,
        ttl_s: float = 60.0,
        settle_s: float = 0.5,
        process: ProcessInfo | None = None,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.runs = runs
        self.collection = collection
        self.source = source
        self.run_id = run_id
        self.ttl_s = ttl_s
        self.settle_s = settle_s
        self.process = process or this_process()
        self.id = str(uuid.uuid5(_NAMESPACE, f"sync-lease|{collection}|{source}"))
        """The lease point's id: the same for every run of (collection, source), on any host."""
        self._since = ""
        self._lost: str | None = None
        self._held = False
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # -- the block -----------------------------------------------------------------------------

    def __enter__(self) -> SyncLease:
        self.take()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    # -- the lease -----------------------------------------------------------------------------

    def take(self) -> None:
        """Claim the lease and start renewing it.

        It is free when there is none, when it expired, when this run holds it, or when its
        holder ran on this host and its process is gone.

        Raises:
            SyncInProgress: Another run holds it (or claimed it at the same time, and later).
            SinkError: The runs collection cannot be read or written.
        """
        self.runs.ensure()
        current = self.read()
        if current is not None and not self._free(current):
            raise SyncInProgress(self._describe(current))
        now = _now()
        self._since = iso(now)
        self._lost = None
        self._write(now)
        self._held = True
        if self.settle_s > 0:
            try:
                time.sleep(self.settle_s)
                current = self.read()
                if not self._ours(current):
                    raise SyncInProgress(self._describe(current))
            except BaseException:
                self.release()  # the claim, if it is still there, is this run's to take back
                raise
        self._stop.clear()
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"sync-lease-{self.run_id[:8]}", daemon=True
        )
        self._heartbeat.start()
        log.debug("run %s holds the sync lease of %s", self.run_id, self.source)

    def check(self) -> None:
        """Make sure this run still holds the lease: called before a run deletes anything.

        Raises:
            SyncInProgress: The lease was lost (it lapsed, and another run took it).
            SinkError: The lease cannot be read (then nothing may be deleted either).
        """
        if self._lost is None:
            current = self.read()
            if not self._ours(current):
                self._lose(current)
        if self._lost is not None:
            raise SyncInProgress(self._lost)

    def release(self) -> None:
        """Stop renewing and delete the lease point, if it is still this run's; a failure to do
        so is logged (the lease then lapses on its own)."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        if not self._held:
            return
        self._held = False
        try:
            if self._ours(self.read()):
                self.runs.store.delete(self.runs.collection, [self.id])
        except ConnectorError as exc:
            log.warning(
                "could not release the sync lease of %s into %s (%s); it lapses within %gs",
                self.source,
                self.collection,
                exc,
                self.ttl_s,
            )

    def read(self) -> dict[str, Any] | None:
        """The lease point's payload as stored; ``None`` when there is none."""
        records = self.runs.store.retrieve(self.runs.collection, [self.id], with_payload=True)
        return dict(records[0].payload or {}) if records else None

    # -- inside --------------------------------------------------------------------------------

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                current = self.read()
                if not self._ours(current):
                    self._lose(current)
                    log.error("%s", self._lost)
                    return
                self._write(_now())
            except Exception as exc:  # a thread of its own: what it cannot do, it says
                # Not fatal yet: the lease holds until it expires, and check() reads it again.
                log.warning("could not renew the sync lease of run %s: %s", self.run_id, exc)

    def _write(self, now: datetime) -> None:
        payload = {
            "kind": LEASE_KIND,
            "collection": self.collection,
            "source": self.source,
            "holder": self.process.model_dump() | {"run_id": self.run_id},
            "since": self._since,
            "heartbeat_at": iso(now),
            "expires_at": iso(now + timedelta(seconds=self.ttl_s)),
        }
        point = qm.PointStruct(id=self.id, vector={}, payload=payload)
        self.runs.store.upsert(self.runs.collection, [point])

    def _ours(self, current: Mapping[str, Any] | None) -> bool:
        return current is not None and _holder(current).get("run_id") == self.run_id

    def _free(self, current: Mapping[str, Any]) -> bool:
        if self._ours(current):
            return True
        holder = _holder(current)
        expires = parse_time(current.get("expires_at"))
        if expires is None or expires < _now():
            log.info("the sync lease of run %s has lapsed; taken over", holder.get("run_id"))
            return True
        try:
            process = ProcessInfo.model_validate(holder)
        except ValueError:
            return False
        if process_alive(process) is False:  # of this host, and gone (another's is unknown)
            log.info(
                "the sync lease of run %s is held by a process of this host that is gone (pid "
                "%d); taken over",
                holder.get("run_id"),
                process.pid,
            )
            return True
        return False

    def _lose(self, current: Mapping[str, Any] | None) -> None:
        now = "another run took it and let it go" if current is None else self._describe(current)
        self._lost = (
            f"run {self.run_id} lost its sync lease (it lapsed unrenewed, or another claim "
            f"crossed its own) and deletes nothing: {now}"
        )

    def _describe(self, current: Mapping[str, Any] | None) -> str:
        """One line naming the holder, for the run that finds the lease held."""
        if current is None:
            return (
                f"source {self.source} into collection {self.collection}: another sync claimed "
                "the lease at the same time and let it go; try again"
            )
        holder = _holder(current)
        return (
            f"source {self.source} into collection {self.collection} is being synced by run "
            f"{holder.get('run_id')} (pid {holder.get('pid')} on host {holder.get('host')}) "
            f"since {current.get('since')}; its lease expires at {current.get('expires_at')} "
            "unless renewed (a dead holder's lease lapses on its own)"
        )


def _holder(payload: Mapping[str, Any]) -> dict[str, Any]:
    holder = payload.get("holder")
    return dict(holder) if isinstance(holder, Mapping) else {}


def _now() -> datetime:
    return datetime.now(UTC)

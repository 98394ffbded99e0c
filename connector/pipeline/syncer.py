"""One sync: read the source, encode what changed, write it, delete what disappeared."""

from __future__ import annotations

import gc
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from connector.chunks import point_id
from connector.errors import UnsafeDelete, describe_failure
from connector.pipeline._build import Builder
from connector.pipeline._encode import DenseEncode, SparseEncode
from connector.pipeline._flow import Flow, Stage
from connector.pipeline._plan import Planner, Window
from connector.pipeline._workers import auto_workers, runs_in_workers, sparse_workers
from connector.pipeline.progress import NULL_PROGRESS, Progress
from connector.pipeline.stages import DenseStage
from connector.runs.record import RunRecord
from connector.sources._skips import KEPT_ENTRIES, SkipLog
from connector.sparse import sparse_model
from connector.sparse.target import SparseTarget
from connector.store import CollectionLayout, Writer, as_uuid_int
from connector.telemetry import Telemetry

if TYPE_CHECKING:
    from connector.compute import RayCompute, RayRun
    from connector.dense import DenseEncoder
    from connector.sources import Source

__all__ = ["SparseTarget", "Syncer"]

log = logging.getLogger(__name__)

_DEPTH = 2
"""Windows that may wait between two stages: enough to keep the dense stage fed, few enough to
keep memory flat."""


class Syncer:
    """Runs syncs of one collection with one set of models.

    Args:
        writer: Where points go: the store's writer of the collection.
        dense: The dense ensemble (one named vector each).
        sparse: The sparse model, or ``None`` when sparse is off.
        batch_size: Chunks read, compared and encoded together.
        strict: Fail on a repeated chunk id instead of skipping and reporting it.
        max_delete_fraction: Largest share of a source's stored points one run may delete.
        allow_mass_delete: Let a run delete more than that (an empty read included).
        progress: Told how far the run is.
        telemetry: Where the ``sync`` span and its per-batch ``dense`` span go (the sparse
            generator and the writer emit ``sparse_inference`` and ``upsert`` under it).
        dense_stage: Runs the dense models (default: on the CPU).
        overlap: Read and plan the next window and build and write the last one while a window
            encodes (each stage in its own thread); ``False``: every stage in turn, one window at
            a time, in the caller's thread.
        workers: Processes that take a run's CPU work, started once per run; ``1``: all in
            this process. Above 1, one of them holds the collection of the embedded engine and
            writes to it (:meth:`Writer.in_writer_process`; on a server, writes stay in this
            process), and the others run the sparse model when it runs on the CPU. ``None``:
            :func:`auto_workers` of the source's size.
        compute: Encode on a Ray cluster instead (``workers`` then does not apply): this
            process still reads, plans, writes (unless the actors write to a server
            themselves), deletes and records.
        guard: Called right before a run deletes what disappeared from the source; what it
            raises fails the run with nothing deleted (a sync lease lost to another run).
    """

    def __init__(
        self,
        writer: Writer,
        dense: Sequence[DenseEncoder],
        sparse: SparseTarget | None = None,
        *,
        batch_size: int = 256,
        strict: bool = False,
        max_delete_fraction: float = 0.2,
        allow_mass_delete: bool = False,
        progress: Progress = NULL_PROGRESS,
        telemetry: Telemetry | None = None,
        dense_stage: DenseStage | None = None,
        overlap: bool = True,
        workers: int | None = 1,
        compute: RayCompute | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self.writer = writer
        self.dense = list(dense)
        self.sparse = sparse
        self.batch_size = batch_size
        self.strict = strict
        self.max_delete_fraction = max_delete_fraction
        self.allow_mass_delete = allow_mass_delete
        self.progress = progress
        self.telemetry = telemetry or Telemetry()
        self.dense_stage = dense_stage or DenseStage(telemetry=self.telemetry)
        self.overlap = overlap
        self.workers = workers
        self.compute = compute
        self.guard = guard
        self.record: RunRecord | None = None
        """The record of the run in progress or last run, also when it failed."""

    def layout(self) -> CollectionLayout:
        """The vectors this sync needs, and what to record about them on the collection."""
        vectors: dict[str, Any] = {
            e.name: {"kind": "dense", "signature": e.signature, "size": e.dim} for e in self.dense
        }
        sparse: dict[str, bool] = {}
        if self.sparse is not None:
            sparse[self.sparse.vector_name] = self.sparse.idf
            described = sparse_model(self.sparse.model_name).description
            vectors[self.sparse.vector_name] = {
                "kind": "sparse",
                "model": self.sparse.model_name,
                "flavour": described.flavour,
                "index_space": described.index_space,
                "signature": self.sparse.signature,
                "idf": self.sparse.idf,
            }
            if self.sparse.options:
                vectors[self.sparse.vector_name]["options"] = self.sparse.options
        return CollectionLayout(
            dense={e.name: e.dim for e in self.dense},
            sparse=sparse,
            metadata={"connector": {"vectors": vectors}},
        )

    def new_record(self, source_name: str, run_id: str | None = None) -> RunRecord:
        """An empty record of a run of this syncer (what a run records before it starts)."""
        record = RunRecord(
            run_id=run_id or str(uuid.uuid4()),
            source=source_name,
            collection=self.writer.collection,
            batch_size=self.batch_size,
        )
        record.dense.models = {e.name: e.signature for e in self.dense}
        record.dense.device = _device_of(self.dense)
        if self.sparse is not None:
            record.sparse.model = self.sparse.model_name
            record.sparse.vector_name = self.sparse.vector_name
        return record

    def run(self, source: Source, run_id: str | None = None) -> RunRecord:
        """Sync ``source`` into the collection.

        Malformed records and repeated ids are skipped and listed in the record (fatal when
        strict). Stored points missing from the source are deleted only after a complete read,
        never those of skipped records, and not at all while a skipped record had no readable id.

        Args:
            source: Where the chunks come from.
            run_id: The run's id (a UUID); default: a new one.

        Raises:
            SourceError: The source is unreadable, or holds bad input and the run is strict;
                writes acknowledged before the failure stay, and nothing is deleted.
            UnsafeDelete: The run would delete more than ``max_delete_fraction`` of the
                source's stored points (an empty read, say) without ``allow_mass_delete``.
            SinkError: Qdrant refused or failed a write.
        """
        attributes = {
            "run_id": run_id or "",
            "collection": self.writer.collection,
            "batch_size": self.batch_size,
            "sparse_model": self.sparse.model_name if self.sparse is not None else "none",
        }
        with self.telemetry.span("sync", attributes) as span:
            record = self._run(source, run_id)
            span.set_attributes(
                {
                    "run_id": record.run_id,
                    "status": record.status,
                    "chunks_seen": record.counts.chunks_seen,
                    "encoded": record.counts.encoded,
                    "deleted": record.writes.deleted,
                }
            )
        return record

    def _run(self, source: Source, run_id: str | None) -> RunRecord:
        started = time.monotonic()
        record = self.new_record(source.name, run_id)
        self.record = record
        # The writer counts acknowledged writes straight into the run's record.
        self.writer.begin(record.writes)
        self.writer.ensure_collection(self.layout())
        signatures = {e.name: e.signature for e in self.dense}
        if self.sparse is not None:
            signatures[self.sparse.vector_name] = self.sparse.signature
        # A point id is the source's and the chunk's: no other source can hold one of them.
        new_source = next(self.writer.stored_ids(source.name, page=1), None) is None
        planner = Planner(self.writer, signatures, strict=self.strict, new_source=new_source)
        duplicates = planner.duplicates
        # A source of one's own may keep no skip log: then it skipped nothing.
        skipped: SkipLog = getattr(source, "skips", None) or SkipLog()
        record.progress.start(source.total_bytes)
        self.progress.start(source.total_bytes)
        # What exists before the run (imported libraries, models: most of the heap) is not
        # garbage of the run: the collector leaves it alone until the run ends, instead of
        # walking it in a pause of ~50 ms that stalls every stage at once.
        gc.freeze()
        deferred = False
        try:
            # A first load into an empty collection builds its graph once, at the end.
            deferred = new_source and self.writer.defer_index()
            self._flow(source, planner, record)
            self.writer.flush()
            record.counts.truncated = getattr(source, "truncated", 0)
            self._note_skips(record, skipped, duplicates)
            seen = planner.seen
            for skips in (skipped, duplicates):
                seen.update(as_uuid_int(point_id(source.name, i)) for i in skips.protected_ids)
                for document in skips.protected_documents:
                    kept = self.writer.stored_ids(source.name, document=document)
                    seen.update(as_uuid_int(pid) for pid in kept)
            self._delete_missing(source.name, seen, record, skipped.unidentified)
            self.writer.build_index()
            record.status = "succeeded"
        except BaseException as exc:
            # Ctrl-C or SIGTERM stops a run; it did not fail on its own.
            stopped = isinstance(exc, KeyboardInterrupt | SystemExit)
            record.status = "interrupted" if stopped else "failed"
            record.reason = describe_failure(exc)
            self._keep_acknowledged()
            if deferred:
                self._restore_index()
            record.counts.truncated = getattr(source, "truncated", 0)
            self._note_skips(record, skipped, duplicates)
            raise
        finally:
            gc.unfreeze()
            # The run's writes are counted: later requests through the store are not the run's.
            self.writer.end()
            record.duration_s = round(time.monotonic() - started, 3)
            self.progress.finish()
        return record

    def _flow(self, source: Source, planner: Planner, record: RunRecord) -> None:
        """Read and plan window k+1 and build and submit window k-1 while window k encodes."""
        if self.compute is not None:
            dense_names = [e.name for e in self.dense]
            with (
                self.compute.run(record, planner.signatures, dense_names) as engine,
                engine.reading(source),
            ):
                self._stages(source, planner, record, self.sparse, engine)
            return
        workers = self.workers or auto_workers(source.total_bytes)
        with ExitStack() as pool:
            sparse = self.sparse
            if workers > 1:
                record.workers = workers
                # The embedded engine's work on each point (the largest share of a CPU-bound
                # sync's) goes to a process of its own: one of the workers.
                moved = pool.enter_context(self.writer.in_writer_process())
                if sparse is not None and runs_in_workers(sparse):
                    processes = workers - 1 if moved else workers
                    sparse = pool.enter_context(sparse_workers(sparse, processes))
            self._stages(source, planner, record, sparse)

    def _stages(
        self,
        source: Source,
        planner: Planner,
        record: RunRecord,
        sparse: SparseTarget | None,
        engine: RayRun | None = None,
    ) -> None:
        if engine is not None:
            # Out to the actors in one stage, back in order in the next: the windows between
            # the two are the ones the actors work on.
            stages = [Stage("submit", engine.submit), Stage("encode", engine.collect)]
            depth = engine.depth
        else:
            stages = self._encode_stages(record, sparse)
            depth = _DEPTH if self.overlap else 0
        build = Builder(
            record, planner.signatures, [e.name for e in self.dense], sparse, self.telemetry
        )

        flow: Flow[Window] = Flow(depth=depth, busy_s=record.stage_busy_s)

        def write(window: Window) -> None:
            if window.written:
                flow.timed("build", build.count, window)  # a Ray actor wrote its points
            else:
                self.writer.submit(flow.timed("build", build, window))
            record.progress.advance(len(window.items), window.bytes_read)
            self.progress.advance(len(window.items), window.bytes_read)

        flow.run(("read", lambda: planner.windows(source, self.batch_size)), stages, write)

    def _encode_stages(self, record: RunRecord, sparse: SparseTarget | None) -> list[Stage[Window]]:
        """The dense and sparse stages of a sync encoding in this process (and its workers)."""
        stages: list[Stage[Window]] = []
        encode_dense = DenseEncode(
            self.dense, self.dense_stage, self.telemetry, record.dense.device or "cpu"
        )
        if self.dense:
            stages.append(Stage("dense", encode_dense))
        if sparse is not None:
            encode_sparse = SparseEncode(sparse, self.telemetry)
            if self.dense and sparse.use_gpu and self.dense_stage.use_gpu:
                # Both lease a GPU: one after the other, as they would not share it anyway.
                stages[-1] = Stage("dense", lambda w: encode_sparse(encode_dense(w)))
            else:
                stages.append(Stage("sparse", encode_sparse))
        return stages

    def _note_skips(self, record: RunRecord, *logs: SkipLog) -> None:
        kinds: dict[str, int] = {}
        entries: list[dict[str, str | None]] = []
        for skips in logs:
            for kind, count in skips.by_kind.items():
                kinds[kind] = kinds.get(kind, 0) + count
            entries.extend(
                {"location": e.location, "kind": e.kind, "reason": e.reason} for e in skips.entries
            )
        noted = record.skips
        noted.count = sum(skips.count for skips in logs)
        noted.by_kind = dict(sorted(kinds.items()))
        noted.records = entries[:KEPT_ENTRIES]
        noted.blank_lines = sum(skips.blank_lines for skips in logs)

    def _delete_missing(
        self, source: str, seen: set[int], record: RunRecord, unidentified: int
    ) -> None:
        stored = 0
        stale: list[str] = []
        for pid in self.writer.stored_ids(source):
            stored += 1
            if as_uuid_int(pid) not in seen:
                stale.append(pid)
        if not stale:
            return
        if unidentified:
            record.skips.deletes_deferred = (
                f"{len(stale)} stored points are missing from the source, but {unidentified} "
                "skipped records had no readable id and may be some of them; nothing was deleted "
                "(fix those records, and the next run deletes what is really gone)"
            )
            log.warning("%s", record.skips.deletes_deferred)
            return
        if len(stale) > self.max_delete_fraction * stored and not self.allow_mass_delete:
            what = "yielded no chunks" if not seen else "is missing most of what was stored"
            raise UnsafeDelete(
                f"source {source} {what}: this run would delete {len(stale)} of its {stored} "
                f"stored points ({len(stale) / stored:.0%}, over the limit of "
                f"{self.max_delete_fraction:.0%}, sync.max_delete_fraction); nothing was deleted "
                "(pass --allow-mass-delete if the source really shrank)"
            )
        if self.guard is not None:
            self.guard()
        log.info("deleting %d points no longer in %s", len(stale), source)
        self.writer.delete(stale)

    def _restore_index(self) -> None:
        """After a failed first load, give the collection its graph back (built by a later run)."""
        try:
            self.writer.build_index(build=False)
        except Exception as exc:  # the original failure is the one to report
            log.warning("while stopping after a failure, restoring the index failed: %s", exc)

    def _keep_acknowledged(self) -> None:
        """On failure, let queued writes finish so completed work is kept; never delete."""
        try:
            self.writer.flush()
        except Exception as exc:  # the original failure is the one to report
            log.warning("while stopping after a failure, a queued write also failed: %s", exc)


def _device_of(encoders: Sequence[DenseEncoder]) -> str:
    """Where the dense models run, as configured (``auto`` when the library picks)."""
    devices = sorted({str(getattr(e, "device", None) or "auto") for e in encoders})
    return ",".join(devices) or "none"

"""The record of one sync, filled as it runs, and every view of it.

The syncer fills one :class:`RunRecord` per run: who runs it, how it ended, its counts, its dense
and sparse stages, what it skipped, how far it read. Everything else about the run is derived from
it, never copied into it: the manifest (:meth:`RunRecord.summary`), the live progress file
(:meth:`RunRecord.live`) and the ``--json`` report of ``connector sync``
(:meth:`RunRecord.report`); the dashboard's row is derived from the manifest and the progress file.

A count of chunks is added in one place, :class:`Counts`: each of its fields is a key of the
manifest's ``counts`` and of the ``--json`` report.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector.runs._process import this_process
from connector.runs.live import ActorProgress, LiveProgress
from connector.runs.manifest import (
    ComputeSection,
    Coverage,
    DenseModel,
    DenseSection,
    DeviceUsage,
    NodeUsage,
    PerformanceBaseline,
    ProcessInfo,
    ProcessingSummary,
    RunProgress,
    RunSection,
    RunStatus,
    SkippedSection,
    SparseInferenceRun,
    UpsertStage,
    now_iso,
)
from connector.store import WriteCounts

__all__ = ["Counts", "DenseStats", "ReadProgress", "RunRecord", "Skips", "SparseStats"]

_COUNTED_WRITES = ("upserted", "vectors_updated", "deleted", "retries")
"""The acknowledged writes (fields of :class:`~connector.store.WriteCounts`) that are run counts
too; the others are the upsert stage's own figures."""


@dataclass(slots=True)
class Counts:
    """What the run did with the chunks it read. Every field is a run count: a key of the
    manifest's ``counts`` and of the ``--json`` report, with no other change needed."""

    chunks_seen: int = 0
    """Chunks read and claimed (a repeated id is skipped, not seen)."""
    encoded: int = 0
    """Chunks for which at least one vector was computed."""
    skipped_unchanged: int = 0
    """Chunks stored already with the same text, metadata and models."""
    payload_only: int = 0
    """Chunks whose metadata changed but not their text: payload rewritten, nothing encoded."""
    truncated: int = 0
    """Chunks read that are longer than a dense model's window (the model does not see their
    end); the chunker keeps this at 0 unless told to leave records whole."""


@dataclass(slots=True)
class DenseStats:
    """The dense stage of a run."""

    models: dict[str, str] = field(default_factory=dict)
    """Dense vector name → signature of the model that fills it."""
    device: str | None = None
    """Where the models run, as configured (``auto`` when the library picks)."""
    latency_ms: float = 0.0
    """Time spent in dense encoding, summed over batches and models."""


@dataclass(slots=True)
class SparseStats:
    """The sparse stage of a run; ``model`` is ``None`` when sparse was off."""

    model: str | None = None
    vector_name: str | None = None
    device: str | None = None
    """Where the model ran last (``cpu`` or ``cuda:N``)."""
    fallbacks: int = 0
    """Chunks whose sparse vector came from metadata (or is missing) instead of the model."""
    fallback_reason: str | None = None
    """Why the model failed, the first time it did."""
    empty: int = 0
    """Chunks whose sparse vector had no terms (every word a stopword, say)."""
    latency_ms: float = 0.0
    """Time spent in sparse inference, summed over batches."""


@dataclass(slots=True)
class Skips:
    """Records the run did not sync, by kind, the first ones listed (never their text). The
    fields are those of the manifest's ``skipped`` section."""

    count: int = 0
    """Records not synced because they were malformed or repeated an id."""
    by_kind: dict[str, int] = field(default_factory=dict)
    records: list[dict[str, str | None]] = field(default_factory=list)
    """Location, kind and reason of the first skipped records."""
    blank_lines: int = 0
    deletes_deferred: str | None = None
    """Why points missing from the source were kept this time, when they were."""


@dataclass(slots=True)
class ReadProgress:
    """How far the run read its source, and since when (a monotonic clock)."""

    chunks_done: int = 0
    bytes_done: int = 0
    total_bytes: int | None = None
    started: float = field(default_factory=time.monotonic)

    def start(self, total_bytes: int | None) -> None:
        """Reading starts: rates count from now."""
        self.total_bytes = total_bytes
        self.started = time.monotonic()

    def advance(self, chunks: int, bytes_read: int) -> None:
        """``chunks`` more were handled; ``bytes_read`` of the source are read in all."""
        self.chunks_done += chunks
        self.bytes_done = bytes_read

    def section(self, running: bool) -> RunProgress:
        """Chunks and bytes done, rate, and (while ``running``) the ETA from the bytes read."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        eta = None
        if running and self.total_bytes and self.bytes_done:
            left = max(self.total_bytes - self.bytes_done, 0)
            eta = round(left / (self.bytes_done / elapsed), 1)
        return RunProgress(
            chunks_done=self.chunks_done,
            bytes_done=self.bytes_done,
            total_bytes=self.total_bytes,
            chunks_per_s=round(self.chunks_done / elapsed, 3) if self.chunks_done else None,
            eta_s=eta,
        )


@dataclass(slots=True, kw_only=True)
class RunRecord:
    """One sync, as it goes and once it ended; the counts of writes are those Qdrant
    acknowledged (:attr:`writes` is the object the store's writer counts into)."""

    run_id: str
    source: str
    collection: str
    batch_size: int
    """Chunks read, compared and encoded together."""
    started_at: str = field(default_factory=now_iso)
    process: ProcessInfo = field(default_factory=this_process)
    """The process that runs the sync (it is the one that makes its record)."""
    config_digest: str | None = None
    """See :func:`connector.runs.config_digest`; set by the run's recorder."""
    status: RunStatus = "running"
    reason: str | None = None
    """Why the run failed or was interrupted (the error's type and message, no chunk text)."""
    duration_s: float = 0.0
    """Wall time of the whole run, once it ended."""
    counts: Counts = field(default_factory=Counts)
    writes: WriteCounts = field(default_factory=WriteCounts)
    vectors_encoded: dict[str, int] = field(default_factory=dict)
    """Vectors computed per vector name, dense and sparse."""
    dense: DenseStats = field(default_factory=DenseStats)
    sparse: SparseStats = field(default_factory=SparseStats)
    skips: Skips = field(default_factory=Skips)
    progress: ReadProgress = field(default_factory=ReadProgress)
    devices: list[DeviceUsage] = field(default_factory=list)
    """Accelerators the run used so far, with VRAM peaks and caps; none on a CPU-only run."""
    stage_busy_s: dict[str, float] = field(default_factory=dict)
    """Seconds each stage of the sync that ran spent working, not waiting on its neighbours
    (``read``, ``dense``, ``sparse``, ``build``), filled as the run goes; the writer's own is
    :attr:`~connector.store.WriteCounts.write_ms`."""
    workers: int = 1
    """Processes that share the run's CPU-bound work."""
    cluster: ComputeSection | None = None
    """Where a Ray run encodes, as it goes (set by the run's Ray engine); ``None``: this
    process and its workers (:meth:`compute` derives that section)."""
    actors: list[ActorProgress] = field(default_factory=list)
    """A Ray run's actors, as of their last window."""

    @property
    def running(self) -> bool:
        """Whether the run has not ended yet."""
        return self.status == "running"

    def totals(self) -> dict[str, int]:
        """Every run count by name (the manifest's ``counts``): the chunk counts, the
        acknowledged writes that are counts, and the records skipped."""
        writes = {name: getattr(self.writes, name) for name in _COUNTED_WRITES}
        return asdict(self.counts) | writes | {"skipped": self.skips.count}

    def compute(self) -> ComputeSection:
        """Where the run encoded: the Ray engine's account, or this host and its workers."""
        if self.cluster is not None:
            return self.cluster
        # The dense models' device: the sparse model's is in the manifest's sparse section.
        devices = [self.dense.device] if self.dense.device not in (None, "none") else []
        chunks = max(self.vectors_encoded.values(), default=0)
        node = NodeUsage(
            node=self.process.host, workers=self.workers, chunks=chunks, devices=devices
        )
        return ComputeSection(engine="local", nodes=1, workers=self.workers, per_node=[node])

    # -- the views -----------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """The ``--json`` report of ``connector sync``: one flat object, every count in it."""
        dense, sparse, skips = self.dense, self.sparse, self.skips
        return {
            "run_id": self.run_id,
            "source": self.source,
            "collection": self.collection,
            "status": self.status,
            "status_reason": self.reason,
            "duration_s": self.duration_s,
            **self.totals(),
            "payloads_updated": self.writes.payloads_updated,
            "upsert_latency_ms": round(self.writes.write_ms, 3),
            "vectors_encoded": dict(self.vectors_encoded),
            "dense_models": dict(dense.models),
            "dense_device": dense.device,
            "dense_latency_ms": round(dense.latency_ms, 3),
            "sparse_model": sparse.model,
            "sparse_vector_name": sparse.vector_name,
            "sparse_device": sparse.device,
            "sparse_fallbacks": sparse.fallbacks,
            "sparse_fallback_reason": sparse.fallback_reason,
            "sparse_empty": sparse.empty,
            "sparse_latency_ms": sparse.latency_ms,
            "skipped_by_kind": dict(skips.by_kind),
            "skipped_records": [dict(entry) for entry in skips.records],
            "blank_lines": skips.blank_lines,
            "deletes_deferred": skips.deletes_deferred,
            "compute": self.compute().model_dump(mode="json"),
        }

    def summary(self) -> ProcessingSummary:
        """The run's manifest as of now (``finished_at`` set once the run ended)."""
        sparse = self._sparse_run()
        now = now_iso()
        dense_ms = round(self.dense.latency_ms, 3)
        upsert_ms = round(self.writes.write_ms, 3)
        writes = self.writes
        return ProcessingSummary(
            schema_version="4.1" if sparse is not None else "4.0",
            run=RunSection(
                id=self.run_id,
                started_at=self.started_at,
                finished_at=None if self.running else now,
                updated_at=now,
                status=self.status,
                reason=self.reason,
                source=self.source,
                collection=self.collection,
                config_digest=self.config_digest,
                sparse_enabled=self.sparse.model is not None,
                process=self.process,
            ),
            counts=self.totals(),
            progress=self.progress.section(self.running),
            dense=DenseSection(
                models=[DenseModel(vector=k, signature=v) for k, v in self.dense.models.items()],
                device=self.dense.device or "none",
                latency_ms=dense_ms,
                vectors={k: n for k, n in self.vectors_encoded.items() if k in self.dense.models},
            ),
            upsert=UpsertStage(
                points_upserted=writes.upserted,
                vectors_updated=writes.vectors_updated,
                payloads_updated=writes.payloads_updated,
                deleted=writes.deleted,
                skipped_unchanged=self.counts.skipped_unchanged,
                retries=writes.retries,
                latency_ms=upsert_ms,
            ),
            performance=self._baseline(dense_ms, upsert_ms),
            skipped=SkippedSection(**asdict(self.skips)),
            sparse_run=sparse,
            compute=self.compute(),
        )

    def live(self) -> LiveProgress:
        """The run's ``progress.json`` as of now."""
        return LiveProgress(
            run_id=self.run_id,
            status=self.status,
            collection=self.collection,
            source=self.source,
            started_at=self.started_at,
            updated_at=now_iso(),
            **self.progress.section(self.running).model_dump(),
            batch_size=self.batch_size,
            dense_device=self.dense.device,
            sparse_device=self.sparse.device,
            fallbacks=self.sparse.fallbacks,
            process=self.process,
            compute=self.compute(),
            actors=list(self.actors),
        )

    # -- manifest sections ---------------------------------------------------------------------

    def _sparse_run(self) -> SparseInferenceRun | None:
        sparse = self.sparse
        if sparse.model is None:
            return None
        total = self.vectors_encoded.get(sparse.vector_name or "", 0)
        available = total - sparse.fallbacks
        return SparseInferenceRun(
            run_id=self.run_id,
            sparse_model=sparse.model,
            latency_ms=round(sparse.latency_ms, 3),
            fallback_used=sparse.fallbacks > 0,
            fallback_reason=sparse.fallback_reason,
            coverage=Coverage(
                total=total,
                available=available,
                coverage_ratio=round(available / total, 6) if total else None,
            ),
            devices={sparse.model: sparse.device or "none"},
            document_sparse_vectors={
                "written": total - sparse.empty,
                "empty": sparse.empty,
                "fallbacks": sparse.fallbacks,
            },
        )

    def _baseline(self, dense_ms: float, upsert_ms: float) -> PerformanceBaseline:
        # A running run's duration so far is the wall time since it started.
        duration_s = _seconds_since(self.started_at) if self.running else self.duration_s
        dense_chunks = max(
            (n for k, n in self.vectors_encoded.items() if k in self.dense.models), default=0
        )
        sparse = self.sparse
        sparse_chunks = self.vectors_encoded.get(sparse.vector_name or "", 0)
        written = self.writes.upserted + self.writes.payloads_updated
        return PerformanceBaseline(
            duration_s=round(duration_s, 3),
            chunks_per_s={
                "overall": _rate(self.counts.chunks_seen, duration_s * 1000),
                "dense": _rate(dense_chunks, dense_ms),
                "sparse_inference": (
                    _rate(sparse_chunks, sparse.latency_ms) if sparse.model is not None else None
                ),
                "upsert": _rate(written, upsert_ms),
            },
            devices=list(self.devices),
            soft_limit_exceedances=sum(d.soft_limit_exceedances for d in self.devices),
            stage_busy_s=self._stage_busy(),
            workers=self.workers,
        )

    def _stage_busy(self) -> dict[str, float | None]:
        """Busy seconds per stage in flow order (``None``: the stage did not run), so that an
        operator sees which stage bounds the run: the one busy for most of its duration."""
        busy = {
            name: round(self.stage_busy_s[name], 3) if name in self.stage_busy_s else None
            for name in _FLOW_STAGES
        }
        return busy | {"write": round(self.writes.write_ms / 1000, 3)}


_FLOW_STAGES = ("read", "dense", "sparse", "build")
"""The stages a sync's flow times itself; ``write`` is the writer's."""


def _rate(count: int, milliseconds: float) -> float | None:
    if count <= 0 or milliseconds <= 0:
        return None
    return round(count / (milliseconds / 1000), 3)


def _seconds_since(iso: str) -> float:
    try:
        return max(0.0, (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds())
    except ValueError:
        return 0.0

"""One sync: read the source, encode what changed, write it, delete what disappeared."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from qdrant_client import models as qm

from connector.chunks import ChunkRecord, content_hash, point_id, text_hash
from connector.errors import InvalidRecord, SourceError, UnsafeDelete, describe_failure
from connector.pipeline.progress import NULL_PROGRESS, Progress
from connector.pipeline.stages import DenseStage
from connector.runs.record import RunRecord
from connector.sources._skips import KEPT_ENTRIES, SkipLog
from connector.sparse import sparse_model
from connector.store import (
    CollectionLayout,
    PointState,
    WriteBatch,
    Writer,
    as_uuid_int,
)
from connector.telemetry import Telemetry

if TYPE_CHECKING:
    from connector.dense import DenseEncoder
    from connector.sources import Source
    from connector.sparse.generator import SparseVectorGenerator

__all__ = ["SparseTarget", "Syncer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SparseTarget:
    """The sparse model of a run, the named vector it writes, and where it may run."""

    generator: SparseVectorGenerator
    model_name: str
    vector_name: str
    idf: bool
    use_gpu: bool = False
    device_ids: tuple[int, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    """Options that shape the vectors (BM25's k, b, avg_len...), recorded on the collection."""

    @property
    def signature(self) -> str:
        return self.generator.signature(self.model_name)


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
        self._signatures: dict[str, str] = {}
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
        self._signatures = {e.name: e.signature for e in self.dense}
        if self.sparse is not None:
            self._signatures[self.sparse.vector_name] = self.sparse.signature
        seen: set[int] = set()
        duplicates = SkipLog(strict=self.strict)
        # A source of one's own may keep no skip log: then it skipped nothing.
        skipped: SkipLog = getattr(source, "skips", None) or SkipLog()
        record.progress.start(source.total_bytes)
        self.progress.start(source.total_bytes)
        try:
            window: list[tuple[ChunkRecord, str]] = []
            for chunk in source:
                pid = self._claim(chunk, source.name, seen, duplicates)
                if pid is None:
                    continue
                window.append((chunk, pid))
                if len(window) >= self.batch_size:
                    self._process(window, record)
                    self._advance(len(window), source.bytes_read, record)
                    window = []
            if window:
                self._process(window, record)
                self._advance(len(window), source.bytes_read, record)
            self.writer.flush()
            self._note_skips(record, skipped, duplicates)
            for skips in (skipped, duplicates):
                seen.update(as_uuid_int(point_id(source.name, i)) for i in skips.protected_ids)
            self._delete_missing(source.name, seen, record, skipped.unidentified)
            record.status = "succeeded"
        except BaseException as exc:
            # Ctrl-C or SIGTERM stops a run; it did not fail on its own.
            stopped = isinstance(exc, KeyboardInterrupt | SystemExit)
            record.status = "interrupted" if stopped else "failed"
            record.reason = describe_failure(exc)
            self._keep_acknowledged()
            self._note_skips(record, skipped, duplicates)
            raise
        finally:
            # The run's writes are counted: later requests through the store are not the run's.
            self.writer.end()
            record.duration_s = round(time.monotonic() - started, 3)
            self.progress.finish()
        return record

    def _advance(self, chunks: int, bytes_read: int, record: RunRecord) -> None:
        record.progress.advance(chunks, bytes_read)
        self.progress.advance(chunks, bytes_read)

    def _claim(
        self, chunk: ChunkRecord, source: str, seen: set[int], duplicates: SkipLog
    ) -> str | None:
        """The chunk's point id, or ``None`` when its id was already read in this run (the first
        record with an id wins; the repeat is skipped and reported, or fatal when strict)."""
        if chunk.chunk_id is None:
            raise SourceError(chunk.location or source, "chunk has no id")
        pid = point_id(source, chunk.chunk_id)
        key = as_uuid_int(pid)
        if key in seen:
            duplicates.skip(
                InvalidRecord(
                    chunk.location or source,
                    f"duplicate chunk id {chunk.chunk_id!r} (already read earlier in this source)",
                    kind="duplicate_id",
                )
            )
            return None
        seen.add(key)
        return pid

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

    def _process(self, window: list[tuple[ChunkRecord, str]], record: RunRecord) -> None:
        states = self.writer.fetch_state([pid for _, pid in window])
        counts = record.counts
        counts.chunks_seen += len(window)
        needs: dict[str, list[int]] = {name: [] for name in self._signatures}
        plans: list[tuple[str, list[str]]] = []  # (kind, vectors to compute)
        for index, (chunk, pid) in enumerate(window):
            kind, missing = self._plan(chunk, states.get(pid))
            plans.append((kind, missing))
            for name in missing:
                needs[name].append(index)
        vectors, fallbacks = self._encode(window, needs, record)
        batch = WriteBatch()
        now = datetime.now(UTC).isoformat(timespec="seconds")
        before = (counts.encoded, counts.skipped_unchanged, counts.payload_only)
        for index, ((chunk, pid), (kind, missing)) in enumerate(zip(window, plans, strict=True)):
            if kind == "skip":
                counts.skipped_unchanged += 1
                continue
            payload = self._payload(chunk, record, now, fallbacks.get(index))
            if kind == "payload":
                counts.payload_only += 1
                batch.payload_overwrites.append((pid, payload))
                continue
            counts.encoded += 1
            point_vectors = {name: vectors[name][index] for name in missing}
            point_vectors = {k: v for k, v in point_vectors.items() if v is not None}
            if kind == "full":
                batch.upserts.append(qm.PointStruct(id=pid, vector=point_vectors, payload=payload))
                continue
            if point_vectors:
                batch.vector_updates.append(qm.PointVectors(id=pid, vector=point_vectors))
            # The whole payload is rewritten so that a fallback note of an earlier run goes too.
            batch.payload_overwrites.append((pid, payload))
        self.telemetry.count_chunks(counts.encoded - before[0], "encoded")
        self.telemetry.count_chunks(counts.skipped_unchanged - before[1], "unchanged")
        self.telemetry.count_chunks(counts.payload_only - before[2], "metadata_only")
        self.writer.submit(batch)

    def _plan(self, chunk: ChunkRecord, state: PointState | None) -> tuple[str, list[str]]:
        """``full`` (new or text changed), ``partial`` (some vectors stale: a model changed, or
        sparse was off or fell back), ``payload`` (metadata changed) or ``skip``."""
        names = list(self._signatures)
        if state is None or state.text_hash != text_hash(chunk.text):
            return "full", names
        missing = [n for n in names if state.encoded_with.get(n) != self._signatures[n]]
        if missing:
            return "partial", missing
        if state.content_hash != content_hash(chunk.text, chunk.metadata):
            return "payload", []
        return "skip", []

    def _encode(
        self, window: list[tuple[ChunkRecord, str]], needs: dict[str, list[int]], record: RunRecord
    ) -> tuple[dict[str, dict[int, Any]], dict[int, str]]:
        """Vectors per name per window position, and why a position's sparse vector fell back."""
        out: dict[str, dict[int, Any]] = {}
        fallbacks: dict[int, str] = {}
        if any(needs[encoder.name] for encoder in self.dense):
            self._encode_dense(window, needs, record, out)
        if self.sparse is not None and needs[self.sparse.vector_name]:
            target = self.sparse
            indices = needs[target.vector_name]
            result = target.generator.generate(
                [window[i][0] for i in indices],
                target.model_name,
                target.use_gpu,
                target.device_ids,
            )
            vectors: dict[int, Any] = {}
            for position, (i, vec) in enumerate(zip(indices, result.vectors, strict=True)):
                if position in result.fallback_reasons:
                    fallbacks[i] = result.fallback_reasons[position]
                if vec and vec["indices"]:
                    vectors[i] = qm.SparseVector(indices=vec["indices"], values=vec["values"])
                else:
                    # Qdrant has nothing to match on; the signature still records it as done.
                    vectors[i] = None
                    record.sparse.empty += 1
            out[target.vector_name] = vectors
            stats = record.sparse
            stats.device = result.device
            stats.fallbacks += result.fallback_count
            self.telemetry.count_fallbacks(result.fallback_count, target.model_name)
            self.telemetry.record_stage("sparse_inference", result.latency_ms)
            if result.error_message and stats.fallback_reason is None:
                stats.fallback_reason = result.error_message
            stats.latency_ms += result.latency_ms
            count = record.vectors_encoded.get(target.vector_name, 0) + len(indices)
            record.vectors_encoded[target.vector_name] = count
        return out, fallbacks

    def _encode_dense(
        self,
        window: list[tuple[ChunkRecord, str]],
        needs: dict[str, list[int]],
        record: RunRecord,
        out: dict[str, dict[int, Any]],
    ) -> None:
        started = time.perf_counter()
        attributes = {
            "models": ",".join(e.name for e in self.dense if needs[e.name]),
            "device": record.dense.device or "cpu",
            "chunk_count": len({i for e in self.dense for i in needs[e.name]}),
        }
        with self.telemetry.span("dense", attributes) as span:
            for encoder in self.dense:
                indices = needs[encoder.name]
                if indices:
                    texts = [window[i][0].text for i in indices]
                    encoded = self.dense_stage.encode(encoder, texts)
                    out[encoder.name] = dict(zip(indices, encoded, strict=True))
                    count = record.vectors_encoded.get(encoder.name, 0) + len(indices)
                    record.vectors_encoded[encoder.name] = count
            latency = (time.perf_counter() - started) * 1000
            span.set_attribute("latency_ms", round(latency, 3))
        record.dense.latency_ms += latency
        self.telemetry.record_stage("dense", latency)

    def _payload(
        self, chunk: ChunkRecord, record: RunRecord, now: str, fallback: str | None
    ) -> dict[str, Any]:
        encoded_with = dict(self._signatures)
        extra: dict[str, Any] = {}
        if fallback is not None and self.sparse is not None:
            # Not the model's signature: the next sync tries the model again for this chunk.
            name = self.sparse.vector_name
            encoded_with[name] = f"fallback|{encoded_with[name]}"
            extra["sparse_fallback"] = {"model": self.sparse.model_name, "reason": fallback}
        return extra | {
            "chunk_id": chunk.chunk_id,
            "source": record.source,
            "text": chunk.text,
            "metadata": chunk.metadata,
            "text_hash": text_hash(chunk.text),
            "content_hash": content_hash(chunk.text, chunk.metadata),
            "encoded_with": encoded_with,
            "run_id": record.run_id,
            "synced_at": now,
        }

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
        log.info("deleting %d points no longer in %s", len(stale), source)
        self.writer.delete(stale)

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

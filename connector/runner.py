"""One sync: read the source, encode what changed, write it, delete what disappeared."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from qdrant_client import models as qm

from connector.chunks import ChunkRecord, content_hash, point_id, text_hash
from connector.errors import SourceError, UnsafeDelete
from connector.progress import NULL_PROGRESS, Progress
from connector.sink import (
    CollectionLayout,
    PointState,
    QdrantSink,
    WriteBatch,
    WriteCounts,
    as_uuid_int,
)
from connector.sparse import model_spec

if TYPE_CHECKING:
    from connector.dense import DenseEncoder
    from connector.sources import Source
    from connector.sparse.generator import SparseVectorGenerator

__all__ = ["SparseTarget", "SyncReport", "Syncer"]

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


@dataclass(slots=True)
class SyncReport:
    """What a sync did; counts of writes are those Qdrant acknowledged."""

    run_id: str
    source: str
    collection: str
    status: str = "running"
    chunks_seen: int = 0
    encoded: int = 0
    """Chunks for which at least one vector was computed."""
    skipped_unchanged: int = 0
    payload_only: int = 0
    """Chunks whose metadata changed but not their text: payload rewritten, nothing encoded."""
    upserted: int = 0
    vectors_updated: int = 0
    deleted: int = 0
    retries: int = 0
    sparse_empty: int = 0
    """Chunks whose sparse vector had no terms (every word a stopword, say)."""
    sparse_model: str | None = None
    sparse_vector_name: str | None = None
    sparse_device: str | None = None
    sparse_fallback_reason: str | None = None
    sparse_fallbacks: int = 0
    """Chunks whose sparse vector came from metadata (or is missing) instead of the model."""
    sparse_latency_ms: float = 0.0
    vectors_encoded: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Syncer:
    """Runs syncs of one collection with one set of models.

    Args:
        sink: Where points go.
        dense: The dense ensemble (one named vector each).
        sparse: The sparse model, or ``None`` when sparse is off.
        batch_size: Chunks read, compared and encoded together.
        allow_empty: Let an empty read delete every stored point of the source.
        progress: Told how far the run is.
    """

    def __init__(
        self,
        sink: QdrantSink,
        dense: Sequence[DenseEncoder],
        sparse: SparseTarget | None = None,
        *,
        batch_size: int = 256,
        allow_empty: bool = False,
        progress: Progress = NULL_PROGRESS,
    ) -> None:
        self.sink = sink
        self.dense = list(dense)
        self.sparse = sparse
        self.batch_size = batch_size
        self.allow_empty = allow_empty
        self.progress = progress
        self._signatures: dict[str, str] = {}
        self.report: SyncReport | None = None
        """The report of the run in progress or last run, also when it failed."""

    def layout(self) -> CollectionLayout:
        """The vectors this sync needs, and what to record about them on the collection."""
        vectors: dict[str, Any] = {
            e.name: {"kind": "dense", "signature": e.signature, "size": e.dim} for e in self.dense
        }
        sparse: dict[str, bool] = {}
        if self.sparse is not None:
            sparse[self.sparse.vector_name] = self.sparse.idf
            spec = model_spec(self.sparse.model_name)
            vectors[self.sparse.vector_name] = {
                "kind": "sparse",
                "model": self.sparse.model_name,
                "flavour": spec.flavour,
                "index_space": spec.index_space,
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

    def run(self, source: Source) -> SyncReport:
        """Sync ``source`` into the collection.

        Raises:
            SourceError: The source is unreadable or holds bad input; writes acknowledged before
                the failure stay, and nothing is deleted.
            UnsafeDelete: The source was empty while points of it are stored.
            SinkError: Qdrant refused or failed a write.
        """
        started = time.monotonic()
        report = SyncReport(
            run_id=str(uuid.uuid4()), source=source.name, collection=self.sink.collection
        )
        self.report = report
        self.sink.counts = WriteCounts()
        self.sink.ensure_collection(self.layout())
        self._signatures = {e.name: e.signature for e in self.dense}
        if self.sparse is not None:
            self._signatures[self.sparse.vector_name] = self.sparse.signature
            report.sparse_model = self.sparse.model_name
            report.sparse_vector_name = self.sparse.vector_name
        seen: set[int] = set()
        self.progress.start(source.total_bytes)
        try:
            window: list[tuple[ChunkRecord, str]] = []
            for chunk in source:
                window.append((chunk, self._claim(chunk, source.name, seen)))
                if len(window) >= self.batch_size:
                    self._process(window, report)
                    self.progress.advance(len(window), source.bytes_read)
                    window = []
            if window:
                self._process(window, report)
                self.progress.advance(len(window), source.bytes_read)
            self.sink.flush()
            self._delete_missing(source.name, seen, report)
            report.status = "succeeded"
        except BaseException:
            report.status = "failed"
            self._keep_acknowledged()
            raise
        finally:
            self._copy_counts(report)
            report.duration_s = round(time.monotonic() - started, 3)
            self.progress.finish()
        return report

    def _claim(self, chunk: ChunkRecord, source: str, seen: set[int]) -> str:
        """The chunk's point id; a chunk id seen twice in one read is an error."""
        if chunk.chunk_id is None:
            raise SourceError(chunk.location or source, "chunk has no id")
        pid = point_id(source, chunk.chunk_id)
        key = as_uuid_int(pid)
        if key in seen:
            raise SourceError(
                chunk.location or source,
                f"duplicate chunk id {chunk.chunk_id!r} (already read earlier in this source)",
            )
        seen.add(key)
        return pid

    def _process(self, window: list[tuple[ChunkRecord, str]], report: SyncReport) -> None:
        states = self.sink.fetch_state([pid for _, pid in window])
        report.chunks_seen += len(window)
        needs: dict[str, list[int]] = {name: [] for name in self._signatures}
        plans: list[tuple[str, list[str]]] = []  # (kind, vectors to compute)
        for index, (chunk, pid) in enumerate(window):
            kind, missing = self._plan(chunk, states.get(pid))
            plans.append((kind, missing))
            for name in missing:
                needs[name].append(index)
        vectors, fallbacks = self._encode(window, needs, report)
        batch = WriteBatch()
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for index, ((chunk, pid), (kind, missing)) in enumerate(zip(window, plans, strict=True)):
            if kind == "skip":
                report.skipped_unchanged += 1
                continue
            payload = self._payload(chunk, report, now, fallbacks.get(index))
            if kind == "payload":
                report.payload_only += 1
                batch.payload_overwrites.append((pid, payload))
                continue
            report.encoded += 1
            point_vectors = {name: vectors[name][index] for name in missing}
            point_vectors = {k: v for k, v in point_vectors.items() if v is not None}
            if kind == "full":
                batch.upserts.append(qm.PointStruct(id=pid, vector=point_vectors, payload=payload))
                continue
            if point_vectors:
                batch.vector_updates.append(qm.PointVectors(id=pid, vector=point_vectors))
            # The whole payload is rewritten so that a fallback note of an earlier run goes too.
            batch.payload_overwrites.append((pid, payload))
        self.sink.submit(batch)

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
        self, window: list[tuple[ChunkRecord, str]], needs: dict[str, list[int]], report: SyncReport
    ) -> tuple[dict[str, dict[int, Any]], dict[int, str]]:
        """Vectors per name per window position, and why a position's sparse vector fell back."""
        out: dict[str, dict[int, Any]] = {}
        fallbacks: dict[int, str] = {}
        for encoder in self.dense:
            indices = needs[encoder.name]
            if indices:
                encoded = encoder.encode([window[i][0].text for i in indices])
                out[encoder.name] = dict(zip(indices, encoded, strict=True))
                report.vectors_encoded[encoder.name] = report.vectors_encoded.get(
                    encoder.name, 0
                ) + len(indices)
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
                    report.sparse_empty += 1
            out[target.vector_name] = vectors
            report.sparse_device = result.device
            report.sparse_fallbacks += result.fallback_count
            if result.error_message and report.sparse_fallback_reason is None:
                report.sparse_fallback_reason = result.error_message
            report.sparse_latency_ms += result.latency_ms
            count = report.vectors_encoded.get(target.vector_name, 0) + len(indices)
            report.vectors_encoded[target.vector_name] = count
        return out, fallbacks

    def _payload(
        self, chunk: ChunkRecord, report: SyncReport, now: str, fallback: str | None
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
            "source": report.source,
            "text": chunk.text,
            "metadata": chunk.metadata,
            "text_hash": text_hash(chunk.text),
            "content_hash": content_hash(chunk.text, chunk.metadata),
            "encoded_with": encoded_with,
            "run_id": report.run_id,
            "synced_at": now,
        }

    def _delete_missing(self, source: str, seen: set[int], report: SyncReport) -> None:
        stale = [pid for pid in self.sink.stored_ids(source) if as_uuid_int(pid) not in seen]
        if not stale:
            return
        if not seen and not self.allow_empty:
            raise UnsafeDelete(
                f"source {source} yielded no chunks; refusing to delete its {len(stale)} stored "
                "points (pass --allow-empty if the source really is empty now)"
            )
        log.info("deleting %d points no longer in %s", len(stale), source)
        self.sink.delete(stale)

    def _keep_acknowledged(self) -> None:
        """On failure, let queued writes finish so completed work is kept; never delete."""
        try:
            self.sink.flush()
        except Exception as exc:  # the original failure is the one to report
            log.warning("while stopping after a failure, a queued write also failed: %s", exc)

    def _copy_counts(self, report: SyncReport) -> None:
        counts = self.sink.counts
        report.upserted = counts.upserted
        report.vectors_updated = counts.vectors_updated
        report.deleted = counts.deleted
        report.retries = counts.retries

"""The last stage of a sync's window: payloads and points, and the window's share of the record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from connector.chunks import ChunkRecord, content_hash, text_hash
from connector.pipeline._plan import Window
from connector.store import PointWrite, WriteBatch
from connector.telemetry import Telemetry

if TYPE_CHECKING:
    from connector.pipeline.syncer import SparseTarget
    from connector.runs.record import RunRecord

__all__ = ["Builder"]


class Builder:
    """Builds a window's writes and counts it into the run's record (one window at a time, in
    window order: the record has this one writer).

    Args:
        record: The run's record.
        signatures: Per vector name, the signature its current model writes.
        dense_names: The dense vectors, in the ensemble's order.
        sparse: The sparse model, or ``None``.
        telemetry: Chunk counters by outcome.
    """

    def __init__(
        self,
        record: RunRecord,
        signatures: dict[str, str],
        dense_names: list[str],
        sparse: SparseTarget | None,
        telemetry: Telemetry,
    ) -> None:
        self.record = record
        self.signatures = signatures
        self.dense_names = dense_names
        self.sparse = sparse
        self.telemetry = telemetry

    def __call__(self, window: Window) -> WriteBatch:
        """Counts the window into the record and returns its writes."""
        self.count(window)
        return self.writes(window)

    def count(self, window: Window) -> None:
        """Counts the window into the record (alone where a Ray actor wrote its points)."""
        self._note_encoding(window)
        counts = self.record.counts
        counts.chunks_seen += len(window.items)
        before = (counts.encoded, counts.skipped_unchanged, counts.payload_only)
        for kind, _ in window.plans:
            if kind == "skip":
                counts.skipped_unchanged += 1
            elif kind == "payload":
                counts.payload_only += 1
            else:
                counts.encoded += 1
        self.telemetry.count_chunks(counts.encoded - before[0], "encoded")
        self.telemetry.count_chunks(counts.skipped_unchanged - before[1], "unchanged")
        self.telemetry.count_chunks(counts.payload_only - before[2], "metadata_only")

    def writes(self, window: Window) -> WriteBatch:
        """The window's points, vector updates and payload overwrites (nothing is counted)."""
        batch = WriteBatch()
        now = datetime.now(UTC).isoformat(timespec="seconds")
        vectors = window.vectors
        for index, ((chunk, pid), (kind, missing)) in enumerate(
            zip(window.items, window.plans, strict=True)
        ):
            if kind == "skip":
                continue
            payload = self._payload(chunk, now, window.fallbacks.get(index))
            if kind == "payload":
                batch.payload_overwrites.append((pid, payload))
                continue
            point_vectors = {name: vectors[name][index] for name in missing}
            point_vectors = {k: v for k, v in point_vectors.items() if v is not None}
            if kind == "full":
                batch.upserts.append(PointWrite(pid, point_vectors, payload))
                continue
            if point_vectors:
                batch.vector_updates.append((pid, point_vectors))
            # The whole payload is rewritten so that a fallback note of an earlier run goes too.
            batch.payload_overwrites.append((pid, payload))
        return batch

    def _note_encoding(self, window: Window) -> None:
        record = self.record
        encoded = record.vectors_encoded
        for name in self.dense_names:
            if name in window.vectors:
                encoded[name] = encoded.get(name, 0) + len(window.needs[name])
        if window.dense_ms:
            record.dense.latency_ms += window.dense_ms
        result = window.sparse
        if result is None or self.sparse is None:
            return
        name = self.sparse.vector_name
        stats = record.sparse
        stats.empty += window.sparse_empty
        stats.device = result.device
        stats.fallbacks += result.fallback_count
        if result.error_message and stats.fallback_reason is None:
            stats.fallback_reason = result.error_message
        stats.latency_ms += result.latency_ms
        encoded[name] = encoded.get(name, 0) + len(window.needs[name])

    def _payload(self, chunk: ChunkRecord, now: str, fallback: str | None) -> dict[str, Any]:
        encoded_with = dict(self.signatures)
        extra: dict[str, Any] = {}
        if fallback is not None and self.sparse is not None:
            # Not the model's signature: the next sync tries the model again for this chunk.
            name = self.sparse.vector_name
            encoded_with[name] = f"fallback|{encoded_with[name]}"
            extra["sparse_fallback"] = {"model": self.sparse.model_name, "reason": fallback}
        return extra | {
            "chunk_id": chunk.chunk_id,
            "source": self.record.source,
            "text": chunk.text,
            "metadata": chunk.metadata,
            "text_hash": text_hash(chunk.text),
            "content_hash": content_hash(chunk.text, chunk.metadata),
            "encoded_with": encoded_with,
            "run_id": self.record.run_id,
            "synced_at": now,
        }

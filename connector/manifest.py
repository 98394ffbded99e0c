"""The run manifest, ``processing_summary.json``: schema 4.0 without sparse, 4.1 with it.

4.1 only adds the ``sparse_run`` section, so a reader written for 4.0 (extra keys ignored) reads
both. No chunk or query text is ever written here: counts, ids, models and devices only.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from connector.runner import SyncReport

__all__ = [
    "Coverage",
    "ProcessingSummary",
    "RunSection",
    "SparseInferenceRun",
    "build_summary",
    "write_summary",
]

FILE_NAME = "processing_summary.json"


class _Model(BaseModel):
    # Readers ignore keys they do not know: that is what keeps 4.1 readable by 4.0 tools.
    model_config = ConfigDict(extra="ignore")


class Coverage(_Model):
    total: int
    """Chunks given to the sparse stage in this run."""
    available: int
    """Of those, chunks whose vector came from the model."""
    coverage_ratio: float | None
    """``available / total``; ``None`` when the run encoded nothing."""


class SparseInferenceRun(_Model):
    """The sparse stage of one run."""

    run_id: str
    sparse_model: str
    latency_ms: float
    fallback_used: bool
    fallback_reason: str | None = None
    coverage: Coverage
    devices: dict[str, str]
    document_sparse_vectors: dict[str, int]
    """A summary (counts), never the vectors' terms."""
    query_sparse_vector: dict[str, list[float] | list[int]] | None = None
    """Only from `connector search`: ids and weights, never the query text."""


class RunSection(_Model):
    id: str
    started_at: str
    finished_at: str
    status: str
    source: str
    collection: str
    status_reason: str | None = None
    """Why the run failed or was interrupted."""


class SkippedSection(_Model):
    """Records the run did not sync: counted by kind, the first ones listed (no text)."""

    count: int
    by_kind: dict[str, int]
    records: list[dict[str, str | None]]
    blank_lines: int = 0
    deletes_deferred: str | None = None


class ProcessingSummary(_Model):
    schema_version: Literal["4.0", "4.1"]
    run: RunSection
    counts: dict[str, int]
    skipped: SkippedSection | None = None
    sparse_run: SparseInferenceRun | None = None


def build_summary(report: SyncReport, started_at: str) -> ProcessingSummary:
    """The manifest of a finished (or failed) run."""
    counts = {
        key: getattr(report, key)
        for key in (
            "chunks_seen",
            "encoded",
            "skipped_unchanged",
            "payload_only",
            "upserted",
            "vectors_updated",
            "deleted",
            "retries",
            "skipped",
        )
    }
    sparse = None
    if report.sparse_model is not None:
        total = report.vectors_encoded.get(report.sparse_vector_name or "", 0)
        available = total - report.sparse_fallbacks
        sparse = SparseInferenceRun(
            run_id=report.run_id,
            sparse_model=report.sparse_model,
            latency_ms=round(report.sparse_latency_ms, 3),
            fallback_used=report.sparse_fallbacks > 0,
            fallback_reason=report.sparse_fallback_reason,
            coverage=Coverage(
                total=total,
                available=available,
                coverage_ratio=round(available / total, 6) if total else None,
            ),
            devices={report.sparse_model: report.sparse_device or "none"},
            document_sparse_vectors={
                "written": total - report.sparse_empty,
                "empty": report.sparse_empty,
                "fallbacks": report.sparse_fallbacks,
            },
        )
    return ProcessingSummary(
        schema_version="4.1" if sparse is not None else "4.0",
        run=RunSection(
            id=report.run_id,
            started_at=started_at,
            finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
            status=report.status,
            source=report.source,
            collection=report.collection,
            status_reason=report.status_reason,
        ),
        counts=counts,
        skipped=SkippedSection(
            count=report.skipped,
            by_kind=report.skipped_by_kind,
            records=report.skipped_records,
            blank_lines=report.blank_lines,
            deletes_deferred=report.deletes_deferred,
        ),
        sparse_run=sparse,
    )


def write_summary(state_dir: Path, summary: ProcessingSummary) -> Path:
    """Write ``runs/<run_id>/processing_summary.json`` atomically; returns its path."""
    folder = Path(state_dir) / "runs" / summary.run.id
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".summary-", suffix=".json", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(summary.model_dump(mode="json"), handle, indent=2, sort_keys=True)
    os.replace(tmp, folder / FILE_NAME)
    return folder / FILE_NAME

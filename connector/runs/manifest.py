"""The run manifest, ``processing_summary.json``: schema 4.0 without sparse, 4.1 with it.

4.1 only fills the ``sparse_run`` section (``null`` in 4.0): every other key is present in both and
means the same, so a reader written for 4.0 (extra keys ignored) reads both. No chunk or query text
is ever written here: counts, ids, models, devices and timings only.

The same manifest is the payload of the run's record in the runs collection (see
:mod:`connector.runs.collection`); ``connector schema`` prints its JSON schema.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connector import __version__

if TYPE_CHECKING:
    from connector.pipeline.syncer import SyncReport

__all__ = [
    "FILE_NAME",
    "SCHEMA_FILE",
    "Coverage",
    "DenseModel",
    "DenseSection",
    "DeviceUsage",
    "PerformanceBaseline",
    "ProcessInfo",
    "ProcessingSummary",
    "RunProgress",
    "RunSection",
    "RunStatus",
    "SkippedSection",
    "SparseInferenceRun",
    "UpsertStage",
    "build_summary",
    "iter_summaries",
    "now_iso",
    "read_summary",
    "summary_json_schema",
    "summary_path",
    "write_summary",
]

FILE_NAME = "processing_summary.json"
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / "processing_summary.schema.json"
RunStatus = Literal["running", "succeeded", "failed", "interrupted"]


def now_iso() -> str:
    """Now, UTC, to the millisecond (runs started in one second still sort)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class _Model(BaseModel):
    # Readers ignore keys they do not know: that is what keeps 4.1 readable by 4.0 tools.
    # The attribute docstrings become the descriptions in the exported JSON schema.
    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)


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


class ProcessInfo(_Model):
    """The process that ran the sync, so a later run can tell whether it is still alive."""

    host: str
    pid: int
    start_ticks: int | None = None
    """Its start time in clock ticks after boot (Linux): tells a reused pid apart."""


class RunSection(_Model):
    id: str
    started_at: str
    finished_at: str | None = None
    """``None`` while running."""
    updated_at: str | None = None
    """Last time the record was written (progress of a running run)."""
    status: RunStatus
    reason: str | None = None
    """Why the run failed or was interrupted (an error message, never chunk text)."""
    source: str
    collection: str
    config_digest: str | None = None
    """SHA-256 of the settings (secrets left out), to tell runs of the same config apart."""
    connector_version: str = __version__
    sparse_enabled: bool = False
    """Whether sparse was on for this run (then ``sparse_run`` must be there)."""
    process: ProcessInfo | None = None


class RunProgress(_Model):
    """How far the run got (the final figures once it ended)."""

    chunks_done: int = 0
    bytes_done: int = 0
    total_bytes: int | None = None
    chunks_per_s: float | None = None
    eta_s: float | None = None


class DenseModel(_Model):
    vector: str
    """Name of the vector in Qdrant."""
    signature: str
    """Model, size and options: changes whenever its vectors would."""


class DenseSection(_Model):
    """The dense stage of one run: its models, device, time and vectors."""

    models: list[DenseModel]
    device: str
    latency_ms: float
    """Time in dense encoding, summed over batches and models."""
    vectors: dict[str, int]
    """Vectors computed per vector name."""


class UpsertStage(_Model):
    """Writes Qdrant acknowledged."""

    points_upserted: int
    vectors_updated: int
    payloads_updated: int
    deleted: int
    skipped_unchanged: int
    retries: int
    latency_ms: float
    """Time in write requests (they run in a background thread, overlapping encoding)."""


class DeviceUsage(_Model):
    """One accelerator a stage ran on; CPU-only runs list none."""

    device: str
    peak_vram_mb: float | None = None
    vram_hard_cap_mb: float | None = None
    vram_soft_limit_mb: float | None = None
    soft_limit_exceedances: int = 0


class PerformanceBaseline(_Model):
    duration_s: float
    chunks_per_s: dict[str, float | None]
    """``overall``, ``dense``, ``sparse_inference``, ``upsert`` (``None``: the stage did no
    work, or sparse was off)."""
    devices: list[DeviceUsage] = Field(default_factory=list)
    soft_limit_exceedances: int = 0
    """Batches that went over a device's soft VRAM limit, summed over devices."""


class SkippedSection(_Model):
    """Records the run did not sync: counted by kind, the first ones listed (never their text)."""

    count: int = 0
    by_kind: dict[str, int] = Field(default_factory=dict)
    records: list[dict[str, str | None]] = Field(default_factory=list)
    """Location, kind and reason of the first skipped records."""
    blank_lines: int = 0
    deletes_deferred: str | None = None
    """Why points missing from the source were kept, when they were."""


class ProcessingSummary(_Model):
    """One run's manifest."""

    schema_version: Literal["4.0", "4.1"]
    run: RunSection
    counts: dict[str, int]
    progress: RunProgress = Field(default_factory=RunProgress)
    dense: DenseSection | None = None
    upsert: UpsertStage | None = None
    performance: PerformanceBaseline | None = None
    skipped: SkippedSection = Field(default_factory=SkippedSection)
    sparse_run: SparseInferenceRun | None = None


_COUNT_KEYS = (
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


def build_summary(
    report: SyncReport,
    started_at: str,
    *,
    reason: str | None = None,
    config_digest: str | None = None,
    process: ProcessInfo | None = None,
    progress: RunProgress | None = None,
    devices: Sequence[DeviceUsage] = (),
) -> ProcessingSummary:
    """The manifest of a run, running or ended, from its report.

    Args:
        report: What the run did so far.
        started_at: When it started (ISO 8601).
        reason: Why it failed or was interrupted.
        config_digest: See :func:`connector.runs.collection.config_digest`.
        process: Host and pid of the process running it.
        progress: Chunks and bytes done; default: the report's chunk count.
        devices: Accelerators used, with their VRAM peaks and caps.
    """
    sparse = _sparse_run(report)
    now = now_iso()
    duration = report.duration_s
    if report.status == "running":
        duration = _seconds_since(started_at)
    return ProcessingSummary(
        schema_version="4.1" if sparse is not None else "4.0",
        run=RunSection(
            id=report.run_id,
            started_at=started_at,
            finished_at=None if report.status == "running" else now,
            updated_at=now,
            status=report.status,  # type: ignore[arg-type]
            reason=reason or report.status_reason,
            source=report.source,
            collection=report.collection,
            config_digest=config_digest,
            sparse_enabled=report.sparse_model is not None,
            process=process,
        ),
        counts={key: getattr(report, key) for key in _COUNT_KEYS},
        progress=progress or RunProgress(chunks_done=report.chunks_seen),
        dense=DenseSection(
            models=[DenseModel(vector=k, signature=v) for k, v in report.dense_models.items()],
            device=report.dense_device or "none",
            latency_ms=round(report.dense_latency_ms, 3),
            vectors={k: n for k, n in report.vectors_encoded.items() if k in report.dense_models},
        ),
        upsert=UpsertStage(
            points_upserted=report.upserted,
            vectors_updated=report.vectors_updated,
            payloads_updated=report.payloads_updated,
            deleted=report.deleted,
            skipped_unchanged=report.skipped_unchanged,
            retries=report.retries,
            latency_ms=round(report.upsert_latency_ms, 3),
        ),
        performance=_baseline(report, duration, devices),
        skipped=SkippedSection(
            count=report.skipped,
            by_kind=report.skipped_by_kind,
            records=report.skipped_records,
            blank_lines=report.blank_lines,
            deletes_deferred=report.deletes_deferred,
        ),
        sparse_run=sparse,
    )


def _sparse_run(report: SyncReport) -> SparseInferenceRun | None:
    if report.sparse_model is None:
        return None
    total = report.vectors_encoded.get(report.sparse_vector_name or "", 0)
    available = total - report.sparse_fallbacks
    return SparseInferenceRun(
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


def _baseline(
    report: SyncReport, duration_s: float, devices: Sequence[DeviceUsage]
) -> PerformanceBaseline:
    dense_chunks = max(
        (n for k, n in report.vectors_encoded.items() if k in report.dense_models), default=0
    )
    sparse_chunks = report.vectors_encoded.get(report.sparse_vector_name or "", 0)
    written = report.upserted + report.payloads_updated
    return PerformanceBaseline(
        duration_s=round(duration_s, 3),
        chunks_per_s={
            "overall": _rate(report.chunks_seen, duration_s * 1000),
            "dense": _rate(dense_chunks, report.dense_latency_ms),
            "sparse_inference": (
                _rate(sparse_chunks, report.sparse_latency_ms)
                if report.sparse_model is not None
                else None
            ),
            "upsert": _rate(written, report.upsert_latency_ms),
        },
        devices=list(devices),
        soft_limit_exceedances=sum(d.soft_limit_exceedances for d in devices),
    )


def _rate(count: int, milliseconds: float) -> float | None:
    if count <= 0 or milliseconds <= 0:
        return None
    return round(count / (milliseconds / 1000), 3)


def _seconds_since(iso: str) -> float:
    try:
        return max(0.0, (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds())
    except ValueError:
        return 0.0


def summary_path(state_dir: Path, run_id: str) -> Path:
    """Where the manifest of ``run_id`` lives."""
    return Path(state_dir) / "runs" / run_id / FILE_NAME


def write_summary(state_dir: Path, summary: ProcessingSummary) -> Path:
    """Write ``runs/<run_id>/processing_summary.json`` atomically; returns its path."""
    path = summary_path(state_dir, summary.run.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".summary-", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(summary.model_dump(mode="json"), handle, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path


def read_summary(path: Path) -> ProcessingSummary | None:
    """The manifest in ``path``; ``None`` when it is missing or not a manifest."""
    try:
        return ProcessingSummary.model_validate_json(Path(path).read_bytes())
    except (OSError, ValidationError):
        return None


def iter_summaries(state_dir: Path) -> Iterator[ProcessingSummary]:
    """Every readable manifest in the state folder, in no particular order."""
    for path in (Path(state_dir) / "runs").glob(f"*/{FILE_NAME}"):
        summary = read_summary(path)
        if summary is not None:
            yield summary


def summary_json_schema() -> dict[str, Any]:
    """The JSON schema of the manifest (both 4.0 and 4.1), as checked into the repository."""
    schema = ProcessingSummary.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "processing_summary.json"
    return schema

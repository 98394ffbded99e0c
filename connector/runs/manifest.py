"""The run manifest, ``processing_summary.json``: schema 4.0 without sparse, 4.1 with it.

4.1 only fills the ``sparse_run`` section (``null`` in 4.0): every other key is present in both and
means the same, so a reader written for 4.0 (extra keys ignored) reads both. No chunk or query text
is ever written here: counts, ids, models, devices and timings only.

It is derived from the run's :class:`~connector.runs.record.RunRecord`
(:meth:`~connector.runs.record.RunRecord.summary`). The same manifest is the payload of the run's
point in the runs collection (see :class:`connector.runs.RunStore`); ``connector schema`` prints
its JSON schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connector import __version__
from connector._files import write_json_atomic

__all__ = [
    "FILE_NAME",
    "SCHEMA_FILE",
    "ComputeSection",
    "Coverage",
    "DenseModel",
    "DenseSection",
    "DeviceUsage",
    "NodeUsage",
    "PerformanceBaseline",
    "ProcessInfo",
    "ProcessingSummary",
    "RunProgress",
    "RunSection",
    "RunStatus",
    "SkippedSection",
    "SparseInferenceRun",
    "UpsertStage",
    "iso",
    "iter_summaries",
    "now_iso",
    "parse_time",
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
    return iso(datetime.now(UTC))


def iso(moment: datetime) -> str:
    """``moment`` as a run's timestamps are written: ISO 8601, to the millisecond."""
    return moment.isoformat(timespec="milliseconds")


def parse_time(value: object) -> datetime | None:
    """A timestamp as written by :func:`iso` (or any ISO 8601 time) as an aware UTC datetime;
    ``None`` when missing or unreadable (a time without a zone is taken as UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


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
    stage_busy_s: dict[str, float | None] = Field(default_factory=dict)
    """Seconds each stage worked (``read``, ``dense``, ``sparse``, ``build``, ``write``; ``None``:
    the stage did not run). Stages overlap: the one busy for most of ``duration_s`` bounds the
    run."""
    workers: int = 1
    """Processes that shared the run's CPU-bound work."""


class NodeUsage(_Model):
    """One machine of a run's compute: what ran there and how much of the run it encoded."""

    node: str
    """The machine: its host name on a local run; on Ray, its address and the start of its node
    id (two Ray nodes may share an address)."""
    workers: int
    """Processes (Ray actors) of the run on it."""
    chunks: int
    """Chunks its actors encoded (a chunk whose dense vectors came from one node and its sparse
    vector from another counts on both)."""
    devices: list[str] = Field(default_factory=list)
    """Where its models ran: ``cpu``, ``cuda:0``..."""
    gpus: list[DeviceUsage] = Field(default_factory=list)
    """Its GPUs, with their VRAM peaks and caps (none when it ran on CPUs only)."""


class ComputeSection(_Model):
    """Where the run's encoding ran: this process (``local``) or a Ray cluster (``ray``)."""

    engine: Literal["local", "ray"] = "local"
    nodes: int = 1
    workers: int = 1
    """Processes that shared the encoding: a local run's worker processes, a Ray run's actors."""
    per_node: list[NodeUsage] = Field(default_factory=list)


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
    compute: ComputeSection | None = None
    """Where it encoded; ``None`` in manifests of versions before Ray runs."""


def summary_path(state_dir: Path, run_id: str) -> Path:
    """Where the manifest of ``run_id`` lives."""
    return Path(state_dir) / "runs" / run_id / FILE_NAME


def write_summary(state_dir: Path, summary: ProcessingSummary) -> Path:
    """Write ``runs/<run_id>/processing_summary.json`` atomically; returns its path."""
    path = summary_path(state_dir, summary.run.id)
    return write_json_atomic(path, summary.model_dump(mode="json"), indent=2, sort_keys=True)


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

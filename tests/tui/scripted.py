"""A fixed, scripted dashboard state: fixed times, no clock, no files, no processes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connector.gpu import DeviceInfo, LeaseRecord
from connector.runs import RunRecord
from connector.runs.live import ActorProgress, LiveProgress
from connector.runs.manifest import ComputeSection, NodeUsage, ProcessInfo
from tui.state import RunRow, Snapshot, SparseSwitch

GIB = 1 << 30
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _run(n: int, status: str, **changes: object) -> RunRow:
    row = RunRow(
        run_id=f"00000000-0000-4000-8000-{n:012d}",
        started_at=f"2026-03-01T{11 - n:02d}:{(n * 7) % 60:02d}:00.000+00:00",
        duration_s=60.0 + 37.5 * n,
        status=status,
        chunks=1400,
        encoded=1400 - 100 * n,
        deleted=n % 3,
        fallback_ratio=0.01 * n,
        chunks_per_s=180.0 + 9 * n,
        device="cuda:0",
        schema_version="4.1",
    )
    return replace(row, **changes)  # type: ignore[arg-type]


RUNS = (
    _run(1, "succeeded"),
    _run(2, "interrupted", reason="stopped by SIGTERM", chunks=800, encoded=800),
    _run(3, "succeeded", fallback_ratio=None, schema_version="4.0", device="cpu"),
    _run(4, "failed", reason="SinkUnavailable: no answer", duration_s=3.0, chunks_per_s=None),
    _run(5, "succeeded", fallback_ratio=0.125),
    _run(6, "succeeded"),
    _run(7, "succeeded", fallback_ratio=0.0),
    _run(8, "succeeded"),
)

PROGRESS = LiveProgress(
    run_id="5f0c9a2e-1b7d-4c55-9a51-2f3e4d5c6b7a",
    status="running",
    collection="chunks",
    source="/data/cranfield/corpus.jsonl",
    started_at="2026-03-01T11:55:00.000+00:00",
    updated_at="2026-03-01T11:59:59.500+00:00",
    chunks_done=12_345,
    bytes_done=45_000_000,
    total_bytes=100_000_000,
    chunks_per_s=205.25,
    eta_s=268.0,
    batch_size=128,
    dense_device="cuda:0",
    sparse_device="cuda:0",
    fallbacks=3,
    process=ProcessInfo(host="ops-1", pid=4242),
)

GPUS = (
    DeviceInfo(0, "NVIDIA H100 80GB HBM3", "GPU-0", 80 * GIB, int(14.2 * GIB), 63),
    DeviceInfo(1, "NVIDIA H100 80GB HBM3", "GPU-1", 80 * GIB, GIB // 2, 0),
)

LEASES = (
    LeaseRecord(
        device=0,
        device_name="NVIDIA H100 80GB HBM3",
        holder="connector sync",
        pid=4242,
        model="qdrant-minilm-attention",
        started_at="2026-03-01T11:55:10+00:00",
        vram_reserved=12 * GIB,
    ),
)

BUSY = Snapshot(
    taken_at=NOW,
    state_dir=Path("/srv/connector/state"),
    source="/data/cranfield/corpus.jsonl",
    collection="chunks",
    gpus=GPUS,
    leases=LEASES,
    progress=PROGRESS,
    live=True,
    runs=RUNS,
    sparse=SparseSwitch(True, "switch"),
)
"""A host with two GPUs, one leased by the sync that runs now, and eight runs behind it."""

IDLE_NO_GPU = replace(
    BUSY,
    gpus=(),
    leases=(),
    live=False,
    progress=PROGRESS.model_copy(update={"status": "interrupted", "chunks_done": 800}),
    sparse=SparseSwitch(False, "settings"),
)
"""A CPU-only host with no sync running, sparse off by the settings."""


def ray_run(run_id: str = "00000000-0000-4000-8000-00000000a001") -> RunRecord:
    """A Ray run as its engine leaves the record after a window: two nodes, three actors."""
    run = RunRecord(run_id=run_id, source="memory://x", collection="chunks", batch_size=64)
    run.cluster = ComputeSection(
        engine="ray",
        nodes=2,
        workers=3,
        per_node=[
            NodeUsage(node="10.0.0.2 9f3a", workers=2, chunks=300, devices=["cuda:0", "cpu"]),
            NodeUsage(node="10.0.0.1 04be", workers=1, chunks=0, devices=["cpu"]),
        ],
    )
    dense: dict[str, Any] = {"batch_size": 256, "chunks": 200, "chunks_per_s": 812.5}
    run.actors = [
        ActorProgress(node="10.0.0.2 9f3a", role="sparse", device="cpu", batch_size=32, chunks=100),
        ActorProgress(node="10.0.0.2 9f3a", role="dense", device="cuda:0", **dense),
        ActorProgress(node="10.0.0.1 04be", role="encode", device="cpu"),
    ]
    return run

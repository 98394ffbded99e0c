"""The dense stage, and a sync's two stages on one executor: dense, then sparse, then upsert."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from connector.errors import ModelError
from connector.gpu import BatchPolicy, DeviceExecutor, LeasePool, read_leases
from connector.pipeline.stages import DenseStage
from connector.pipeline.syncer import SparseTarget, Syncer
from connector.sparse.generator import SparseVectorGenerator
from connector.store import Store, Writer
from tests.fakes import (
    GIB,
    FakeDense,
    FakeMemory,
    FakeProbe,
    ListSource,
    chunk,
    fake_cuda,
    recording_telemetry,
)

TEXTS = [
    "Flutter of a cantilever wing.",
    "Heat transfer to a blunt body in hypersonic flight at high altitude.",
    "Buckling.",
    "Boundary layer transition on a flat plate at supersonic speed.",
    "Shock wave.",
]


class MovableDense(FakeDense):
    """A dense fake that can visit the simulated GPU, needing ``cost`` bytes per text there."""

    def __init__(self, memory: FakeMemory, cost: int = GIB, batch_size: int = 4) -> None:
        super().__init__()
        self.memory = memory
        self.cost = cost
        self.batch_size = batch_size
        self.device = "cpu"
        self.calls_on: list[tuple[str, int]] = []

    def to(self, device: str) -> None:
        self.device = device

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        import torch

        self.calls_on.append((self.device, len(texts)))
        if self.device != "cpu":
            need = self.cost * len(texts)
            if need > self.memory.caps[self.device]:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")
            self.memory.peak = need
        return super().encode(texts)


def gpu_executor(tmp_path: Path, memory: FakeMemory, telemetry=None) -> DeviceExecutor:
    pool = LeasePool(tmp_path / "state", FakeProbe(1), timeout_s=0.2, cuda_device=fake_cuda)
    return DeviceExecutor(pool, BatchPolicy(), memory, telemetry)


def test_cpu_vectors_in_input_order() -> None:
    dense = FakeDense()
    assert DenseStage().encode(dense, TEXTS) == FakeDense().encode(TEXTS)


def test_batches_follow_the_encoders_batch_size() -> None:
    dense = MovableDense(FakeMemory(), batch_size=2)
    DenseStage().encode(dense, TEXTS)
    assert dense.calls_on == [("cpu", 2), ("cpu", 2), ("cpu", 1)]


def test_gpu_run_adapts_and_gives_the_same_vectors(tmp_path: Path) -> None:
    memory = FakeMemory()
    # 2.5 GiB a text under a 12 GiB cap: 5 texts do not fit, 4 do.
    dense = MovableDense(memory, cost=5 * GIB // 2, batch_size=8)
    telemetry, exporter = recording_telemetry()
    with gpu_executor(tmp_path, memory) as executor:
        stage = DenseStage(executor, use_gpu=True, telemetry=telemetry)
        assert stage.encode(dense, TEXTS) == FakeDense().encode(TEXTS)
    assert dense.calls_on == [("cuda:0", 5), ("cuda:0", 4), ("cuda:0", 1)]
    assert dense.device == "cpu"
    (span,) = exporter.get_finished_spans()
    assert span.name == "dense_model"
    attributes = dict(span.attributes)
    assert attributes["device"] == "cuda:0" and attributes["oom_count"] == 1
    assert attributes["gpu_batches"] == 2 and attributes["peak_vram_bytes"] == 10 * GIB


def test_a_dense_model_failure_is_raised() -> None:
    class Broken(FakeDense):
        def encode(self, texts):
            raise ModelError("dense model 'x': cannot load")

    class Crashing(FakeDense):
        def encode(self, texts):
            raise ValueError("bad input")

    with pytest.raises(ModelError, match="cannot load"):
        DenseStage().encode(Broken(), TEXTS)
    with pytest.raises(ValueError, match="bad input"):
        DenseStage().encode(Crashing(), TEXTS)


def test_sync_runs_dense_then_sparse_per_window_on_one_executor(tmp_path: Path) -> None:
    memory = FakeMemory()
    telemetry, exporter = recording_telemetry()
    executor = gpu_executor(tmp_path, memory, telemetry)
    dense = MovableDense(memory)
    sparse = SparseTarget(
        generator=SparseVectorGenerator(executor=executor, telemetry=telemetry),
        model_name="qdrant-bm25",
        vector_name="qdrant-bm25",
        idf=True,
        use_gpu=True,
    )
    sink = Writer(Store(QdrantClient(path=str(tmp_path / "qdrant"))), "chunks")
    try:
        syncer = Syncer(
            sink,
            [dense],
            sparse,
            batch_size=3,
            dense_stage=DenseStage(executor, use_gpu=True, telemetry=telemetry),
        )
        report = syncer.run(ListSource([chunk(str(i), text) for i, text in enumerate(TEXTS)]))
        points, _ = sink.store.scroll("chunks", limit=10, with_vectors=True)
    finally:
        executor.close()  # the sync's end gives the GPU back
        sink.store.close()
    assert report.writes.upserted == 5 and report.sparse.device == "cpu"  # BM25 stays on the CPU
    assert all(set(p.vector) == {"fake", "qdrant-bm25"} for p in points)
    names = [span.name for span in exporter.get_finished_spans()]
    assert names == ["dense_model", "sparse_inference", "dense_model", "sparse_inference"]
    assert {device for device, _ in dense.calls_on} == {"cuda:0"}
    assert read_leases(tmp_path / "state") == []


def test_gpu_usage_reaches_the_manifests_performance_baseline(tmp_path: Path) -> None:
    from connector.settings import GpuSettings
    from connector.wiring import device_usage

    memory = FakeMemory()
    # 2.5 GiB a text: the batch of 5 runs out of memory under the 12 GiB cap, then 4 fit.
    dense = MovableDense(memory, cost=5 * GIB // 2, batch_size=8)
    executor = gpu_executor(tmp_path, memory)
    stage = DenseStage(executor, use_gpu=True)
    assert device_usage(executor, GpuSettings()) == []

    stage.encode(dense, TEXTS)

    (usage,) = device_usage(executor, GpuSettings(vram_hard_cap_gb=12, vram_soft_limit_gb=9))
    assert usage.device == "cuda:0"
    assert usage.peak_vram_mb == 10 * 1024 and usage.vram_hard_cap_mb == 12 * 1024
    assert usage.vram_soft_limit_mb == 9 * 1024
    assert executor.usage["cuda:0"].ooms == 1

"""The real CUDA path: NVML, torch's allocator cap, true out-of-memory errors, models on a lease.

Run with ``python -m pytest -m gpu``; without a CUDA device every test here is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from connector.chunks import ChunkRecord
from connector.gpu import (
    GIB,
    BatchPolicy,
    CudaMemory,
    DeviceExecutor,
    LeasePool,
    NvmlProbe,
    Workload,
    cuda_device_for,
    is_out_of_memory,
    move_module,
    read_leases,
)
from connector.settings import DenseModelConfig

pytestmark = pytest.mark.gpu

SENTENCES = [
    "Flutter of a cantilever wing in a subsonic wind tunnel.",
    "Heat transfer to a blunt body in hypersonic flight.",
    "Boundary layer transition on a flat plate at supersonic speed, measured with hot wires.",
    "Buckling of thin cylindrical shells under axial compression.",
] * 10


@pytest.fixture(autouse=True)
def uncapped() -> Iterator[None]:
    yield
    # The cap outlives the test in this process; give the next test the whole device again.
    for ordinal in range(torch.cuda.device_count()):
        torch.cuda.set_per_process_memory_fraction(1.0, ordinal)
    torch.cuda.empty_cache()


def executor(tmp_path: Path, hard_gb: float = 12, soft_gb: float = 10) -> DeviceExecutor:
    policy = BatchPolicy(hard_cap_bytes=int(hard_gb * GIB), soft_limit_bytes=int(soft_gb * GIB))
    return DeviceExecutor(LeasePool(tmp_path, NvmlProbe(), timeout_s=30, holder="gpu-test"), policy)


def test_nvml_and_torch_see_the_same_devices() -> None:
    devices = NvmlProbe().devices()
    assert devices, "CUDA works but NVML reports no device"
    visible = {info.index: cuda_device_for(info) for info in devices}
    assert any(visible.values())
    for info in devices:
        assert info.total_bytes > 0 and info.name
        device = visible[info.index]
        if device is not None:
            total = torch.cuda.get_device_properties(device).total_memory
            assert total <= info.total_bytes


def test_the_hard_cap_is_enforced_by_the_allocator() -> None:
    memory = CudaMemory()
    memory.set_hard_cap("cuda:0", GIB)
    with pytest.raises(torch.cuda.OutOfMemoryError) as caught:
        torch.empty(2 * GIB, dtype=torch.uint8, device="cuda:0")
    assert is_out_of_memory(caught.value)
    small = torch.empty(GIB // 4, dtype=torch.uint8, device="cuda:0")
    del small


def test_real_out_of_memory_halves_until_the_batch_fits(tmp_path: Path) -> None:
    where: list[str] = []
    per_item = 256 << 20  # 256 MiB of activations per item

    def encode(items: list[int]) -> list[int]:
        block = torch.ones(len(items) * per_item, dtype=torch.uint8, device=where[-1])
        return [int(block[0])] * len(items)

    work = Workload(name="allocator", encode=encode, max_batch=32, move=where.append)
    with executor(tmp_path, hard_gb=2, soft_gb=1.5) as leased:
        outcome = leased.run(work, list(range(40)), use_gpu=True)
    assert outcome.results == [1] * 40 and outcome.cpu_batches == 0
    assert outcome.ooms >= 1 and outcome.gpu_batches >= 5
    assert 0 < outcome.peak_bytes <= 2 * GIB
    assert where[0].startswith("cuda:") and where[-1] == "cpu"
    assert read_leases(tmp_path) == []


def test_bm42_on_a_leased_gpu_matches_the_cpu_and_is_staged_back(tmp_path: Path) -> None:
    from connector.sparse.generator import ModelRegistry, SparseVectorGenerator

    registry = ModelRegistry()
    records = [ChunkRecord(text=text) for text in SENTENCES]
    with executor(tmp_path) as leased:
        generator = SparseVectorGenerator(registry, leased)
        cpu = generator.generate(records, "qdrant-minilm-attention")
        gpu = generator.generate(records, "qdrant-minilm-attention", use_gpu=True)
    assert cpu.device == "cpu" and gpu.device.startswith("cuda:")
    assert gpu.success and gpu.fallback_count == 0
    for got, want in zip(gpu.vectors, cpu.vectors, strict=True):
        assert got is not None and want is not None and got["indices"] == want["indices"]
        assert got["values"] == pytest.approx(want["values"], abs=1e-4)
    model = registry.encoder("qdrant-minilm-attention")._model
    assert next(model.parameters()).device.type == "cpu"
    assert read_leases(tmp_path) == []


def test_minilm_on_a_leased_gpu_matches_the_cpu(tmp_path: Path) -> None:
    from connector.dense import SentenceTransformerEncoder
    from connector.pipeline.stages import DenseStage

    encoder = SentenceTransformerEncoder(DenseModelConfig(model="all-MiniLM-L6-v2"))
    cpu = DenseStage().encode(encoder, SENTENCES)
    with executor(tmp_path) as leased:
        gpu = DenseStage(leased, use_gpu=True).encode(encoder, SENTENCES)
    for got, want in zip(gpu, cpu, strict=True):
        assert got == pytest.approx(want, abs=1e-4)
    assert encoder.model.device.type == "cpu"


def test_staging_back_reuses_the_pinned_cpu_weights() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32)).eval()
    x = torch.randn(8, 64)
    expected = module(x)
    move_module(module, "cuda:0")
    kept = {name: t.data_ptr() for name, t in module.state_dict(keep_vars=True).items()}
    assert {t.device.type for t in module.state_dict().values()} == {"cuda"}
    assert torch.allclose(module(x.to("cuda:0")).cpu(), expected, atol=1e-5)
    move_module(module, "cpu")
    pointers = {name: t.data_ptr() for name, t in module.state_dict(keep_vars=True).items()}
    assert {t.device.type for t in module.state_dict().values()} == {"cpu"}
    assert all(t.is_pinned() for t in module.state_dict().values())
    assert torch.equal(module(x), expected)
    move_module(module, "cuda:0")
    move_module(module, "cpu")
    again = {name: t.data_ptr() for name, t in module.state_dict(keep_vars=True).items()}
    assert again == pointers  # the same CPU storage each time: nothing copied back
    assert kept.keys() == pointers.keys()


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_on_cuda_gives_half_weights_and_close_vectors(
    tmp_path: Path, precision: str
) -> None:
    from connector.dense import SentenceTransformerEncoder
    from connector.pipeline.stages import DenseStage

    config = DenseModelConfig(model="all-MiniLM-L6-v2")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    # Loaded straight onto the GPU.
    on_gpu = SentenceTransformerEncoder(config, device="cuda:0", precision=precision)
    half = on_gpu.encode(SENTENCES)
    assert {(p.device.type, p.dtype) for p in on_gpu.model.parameters()} == {("cuda", dtype)}
    # Loaded on the CPU, then leased a GPU by the dense stage: half there, fp32 back home.
    staged_encoder = SentenceTransformerEncoder(config, precision=precision)
    with executor(tmp_path) as leased:  # the model stays on the GPU until the lease goes
        staged = DenseStage(leased, use_gpu=True).encode(staged_encoder, SENTENCES)
    assert {p.dtype for p in staged_encoder.model.parameters()} == {torch.float32}
    full = SentenceTransformerEncoder(config).encode(SENTENCES)
    for vectors in (half, staged):
        for got, want in zip(vectors, full, strict=True):
            cosine = torch.nn.functional.cosine_similarity(
                torch.tensor(got), torch.tensor(want), dim=0
            )
            assert cosine > 0.99


def test_a_held_model_stays_on_the_gpu_between_calls(tmp_path: Path) -> None:
    module = torch.nn.Linear(16, 4).eval()
    moves: list[str] = []

    def move(device: str) -> None:
        moves.append(device)
        move_module(module, device)

    def encode(items: list[int]) -> list[str]:
        device = next(module.parameters()).device
        with torch.no_grad():
            module(torch.ones(len(items), 16, device=device))
        return [device.type] * len(items)

    work = Workload(name="linear", encode=encode, max_batch=8, move=move)
    with executor(tmp_path) as leased:
        for _ in range(5):
            outcome = leased.run(work, list(range(20)), use_gpu=True)
            assert outcome.results == ["cuda"] * 20
        assert len(read_leases(tmp_path)) == 1 and moves == [moves[0]]
    assert moves[0].startswith("cuda:") and moves[1:] == ["cpu"]
    assert next(module.parameters()).device.type == "cpu"
    assert read_leases(tmp_path) == []

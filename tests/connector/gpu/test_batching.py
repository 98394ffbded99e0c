"""Leases, caps, staging and adaptive batches against a simulated GPU.

The model raises torch's own ``torch.cuda.OutOfMemoryError`` once a batch needs more device
memory than the hard cap the executor set; what a batch did need becomes the device's peak.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connector.errors import ModelError
from connector.gpu import BatchPolicy, DeviceExecutor, LeasePool, Workload, read_leases
from tests.fakes import (
    GIB,
    FakeMemory,
    FakeProbe,
    HungryModel,
    fake_cuda,
    recording_telemetry,
)


def make_executor(
    tmp_path: Path,
    memory: FakeMemory,
    *,
    soft: int = 10 * GIB,
    hard: int = 12 * GIB,
    min_batch: int = 4,
    grow_after: int = 4,
    gpus: int = 1,
    timeout_s: float = 0.5,
    telemetry=None,
) -> DeviceExecutor:
    pool = LeasePool(
        tmp_path, FakeProbe(gpus), timeout_s=timeout_s, holder="test", cuda_device=fake_cuda
    )
    policy = BatchPolicy(
        hard_cap_bytes=hard, soft_limit_bytes=soft, min_batch=min_batch, grow_after=grow_after
    )
    return DeviceExecutor(pool, policy, memory, telemetry)


def workload(model: HungryModel, max_batch: int = 64, name: str = "hungry") -> Workload:
    return Workload(name=name, encode=model.encode, max_batch=max_batch, move=model.to, size=len)


def items(n: int, prefix: str = "t") -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]  # one length: the input order is kept


def expected(texts: list[str]) -> list[str]:
    return [f"v({t})" for t in texts]


def test_oom_halves_and_retries_the_same_items(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory, cost=GIB)  # 12 GiB cap: 12 items fit, 16 do not
    texts = items(100)
    outcome = make_executor(tmp_path, memory).run(workload(model), texts, use_gpu=True)

    assert outcome.results == expected(texts) and outcome.failures == {}
    assert model.gpu_sizes()[:4] == [64, 32, 16, 8]
    first = model.batches[0]
    assert model.batches[1:4] == [first[:32], first[:16], first[:8]]
    assert outcome.device == "cuda:0" and outcome.cpu_batches == 0
    assert outcome.ooms == model.gpu_sizes().count(16) + 2  # 64, 32, and each regrowth to 16
    assert memory.caps == {"cuda:0": 12 * GIB}
    assert outcome.peak_bytes == 8 * GIB


def test_minimum_batch_still_out_of_memory_runs_on_the_cpu(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory, cost=4 * GIB)  # even 4 items need 16 GiB
    texts = items(64)
    outcome = make_executor(tmp_path, memory).run(workload(model), texts, use_gpu=True)

    assert model.gpu_sizes() == [64, 32, 16, 8] + [4] * 16
    assert [c for c in model.calls if c[0] == "cpu"] == [("cpu", 64)]
    assert outcome.results == expected(texts) and outcome.failures == {}
    assert outcome.gpu_batches == 0 and outcome.cpu_batches == 1
    assert model.device == "cpu"


def test_min_batch_size_is_configurable(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory, cost=4 * GIB)
    make_executor(tmp_path, memory, min_batch=16).run(workload(model), items(32), use_gpu=True)
    assert model.gpu_sizes() == [32, 16, 16]


def test_soft_limit_halves_the_next_batch(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory, cost=GIB)
    telemetry, exporter = recording_telemetry()
    executor = make_executor(tmp_path, memory, telemetry=telemetry)
    with telemetry.span("test"):
        outcome = executor.run(workload(model, max_batch=12), items(30), use_gpu=True)

    assert model.gpu_sizes() == [12, 6, 6, 6]
    assert outcome.soft_limit_hits == 1 and outcome.ooms == 0
    (span,) = exporter.get_finished_spans()
    soft = [e for e in span.events if e.name == "gpu_soft_limit_exceeded"]
    assert [dict(e.attributes) for e in soft] == [
        {
            "model": "hungry",
            "device": "cuda:0",
            "batch_size": 12,
            "peak_bytes": 12 * GIB,
            "soft_limit_bytes": 10 * GIB,
        }
    ]
    changed = [dict(e.attributes) for e in span.events if e.name == "batch_size_changed"]
    assert changed == [
        {"model": "hungry", "device": "cuda:0", "old": 12, "new": 6, "reason": "soft_limit"}
    ]


def test_batches_grow_back_to_the_recommended_size(tmp_path: Path) -> None:
    memory = FakeMemory()
    # Long texts cost 2 GiB each, short ones a tenth of a GiB: the long ones run first.
    model = HungryModel(memory, cost=lambda t: 2 * GIB if len(t) > 10 else GIB // 10)
    texts = items(120, "s") + items(8, "long-text-")
    executor = make_executor(tmp_path, memory)
    work = workload(model, max_batch=32)
    outcome = executor.run(work, texts, use_gpu=True)

    assert outcome.results == expected(texts)
    assert model.gpu_sizes() == [32, 16, 8, 4, 4, 4, 4, 8, 8, 8, 8, 16, 16, 16, 16, 16]
    assert executor.batcher.batch_size(work) == 32  # back at the model's size, never above
    assert set(model.batches[3] + model.batches[4]) == set(texts[120:])  # the long ones first


def test_the_size_reached_carries_over_to_the_next_call(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory, cost=GIB)
    executor = make_executor(tmp_path, memory)
    work = workload(model)
    executor.run(work, items(20), use_gpu=True)
    assert executor.batcher.batch_size(work) == 10
    model.calls.clear()
    executor.run(work, items(10), use_gpu=True)
    assert model.gpu_sizes() == [10]  # no second round of out-of-memory errors


def test_other_gpu_errors_move_the_batch_to_the_cpu(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory, gpu_error=RuntimeError)
    telemetry, exporter = recording_telemetry()
    with telemetry.span("test"):
        outcome = make_executor(tmp_path, memory, telemetry=telemetry).run(
            workload(model, max_batch=8), items(16, "secret-"), use_gpu=True
        )
    assert outcome.results == expected(items(16, "secret-")) and outcome.failures == {}
    assert model.calls == [("cuda:0", 8), ("cuda:0", 8), ("cpu", 8), ("cpu", 8)]
    (span,) = exporter.get_finished_spans()
    fallbacks = [dict(e.attributes) for e in span.events if e.name == "fallback"]
    assert fallbacks[0] == {
        "model": "hungry",
        "device": "cuda:0",
        "from": "cuda:0",
        "to": "cpu",
        "reason": "RuntimeError on cuda:0",
        "chunks": 8,
    }
    assert "secret" not in str(span.to_json())


def test_cpu_failure_is_reported_per_item_not_raised(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory, cost=4 * GIB, cpu_error=ValueError)
    outcome = make_executor(tmp_path, memory).run(
        workload(model, max_batch=8), items(12), use_gpu=True
    )
    assert outcome.results == [None] * 12
    assert outcome.failures == dict.fromkeys(range(12), "ValueError on cpu")


def test_cpu_failure_raises_when_asked_to(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory, cpu_error=ValueError)
    with pytest.raises(ValueError):
        make_executor(tmp_path, memory).run(workload(model), items(3), catch=False)


def test_lease_record_while_running_and_model_staged_back(tmp_path: Path) -> None:
    memory = FakeMemory()
    seen: list = []

    class Peeking(HungryModel):
        def encode(self, batch):
            seen.extend(read_leases(tmp_path))
            return super().encode(batch)

    model = Peeking(memory)
    with make_executor(tmp_path, memory) as executor:
        executor.run(workload(model), items(4), use_gpu=True)
    (record,) = seen
    assert (record.device, record.holder, record.model) == (0, "test", "hungry")
    assert record.vram_reserved == 12 * GIB
    assert read_leases(tmp_path) == []
    assert model.moves == ["cuda:0", "cpu"] and model.device == "cpu"
    assert memory.frees >= 1  # the cache is emptied once the model is off the device


def test_no_gpu_means_the_cpu_with_a_fallback_event(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory)
    telemetry, exporter = recording_telemetry()
    pool = LeasePool(tmp_path, FakeProbe(0), cuda_device=fake_cuda)
    executor = DeviceExecutor(pool, BatchPolicy(), memory, telemetry)
    with telemetry.span("test"):
        outcome = executor.run(workload(model), items(3), use_gpu=True)
    assert outcome.results == expected(items(3)) and outcome.device == "cpu"
    assert "no GPU found" in (outcome.gpu_error or "")
    assert model.moves == []
    (span,) = exporter.get_finished_spans()
    assert [(e.name, e.attributes["reason"]) for e in span.events] == [
        ("fallback", "lease_unavailable")
    ]


def test_cpu_only_work_and_gpu_off_never_lease(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory)
    executor = make_executor(tmp_path, memory)
    cpu_only = Workload(name="bm25", encode=model.encode, max_batch=64)
    executor.run(cpu_only, items(3), use_gpu=True)
    executor.run(workload(model), items(3), use_gpu=False)
    assert model.moves == [] and memory.caps == {}
    assert not (tmp_path / "leases").exists()


def test_hydration_out_of_memory_runs_everything_on_the_cpu(tmp_path: Path) -> None:
    import torch

    memory = FakeMemory()
    model = HungryModel(memory, hydrate_error=torch.cuda.OutOfMemoryError)
    outcome = make_executor(tmp_path, memory).run(workload(model), items(5), use_gpu=True)
    assert outcome.results == expected(items(5)) and outcome.device == "cpu"
    assert model.calls == [("cpu", 5)]
    assert read_leases(tmp_path) == []


def test_a_model_that_cannot_load_stops_the_run(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory, gpu_error=ModelError)
    outcome = make_executor(tmp_path, memory).run(workload(model), items(5), use_gpu=True)
    assert isinstance(outcome.fatal, ModelError)
    assert outcome.results == [None] * 5 and set(outcome.failures) == set(range(5))
    assert model.calls == [("cuda:0", 5)]  # not retried on the CPU: it would fail the same way
    assert model.device == "cpu" and read_leases(tmp_path) == []


def test_every_decision_is_an_event(tmp_path: Path) -> None:
    memory = FakeMemory()
    # Longest first: a, b (5.5 GiB each), c (13 GiB: never fits), then d, e, f (1 GiB each).
    cost = {"aaaaaaa": 11 * GIB // 2, "bbbbbb": 11 * GIB // 2, "ccccc": 13 * GIB}
    model = HungryModel(memory, cost=lambda t: cost.get(t, GIB))
    telemetry, exporter = recording_telemetry()
    executor = make_executor(tmp_path, memory, telemetry=telemetry, min_batch=1, grow_after=1)
    texts = ["ff", "eee", "dddd", "ccccc", "bbbbbb", "aaaaaaa"]
    with telemetry.span("test"):
        outcome = executor.run(workload(model, max_batch=4), texts, use_gpu=True)

    assert outcome.results == expected(texts)
    (span,) = exporter.get_finished_spans()
    events = [(e.name, dict(e.attributes)) for e in span.events]
    where = {"model": "hungry", "device": "cuda:0"}
    assert [name for name, _ in events] == [
        "gpu_lease_acquired",
        "gpu_oom",  # a, b, c, d: 25 GiB
        "batch_size_changed",  # 4 -> 2
        "gpu_soft_limit_exceeded",  # a, b: 11 GiB
        "batch_size_changed",  # 2 -> 1
        "gpu_oom",  # c alone, at the minimum
        "fallback",  # c to the CPU
        "batch_size_changed",  # 1 -> 2 after d
        "batch_size_changed",  # 2 -> 4 after e, f
        "gpu_lease_released",
    ]
    assert events[1][1] == where | {"batch_size": 4}
    assert events[2][1] == where | {"old": 4, "new": 2, "reason": "oom"}
    assert events[3][1]["peak_bytes"] == 11 * GIB and events[3][1]["batch_size"] == 2
    assert events[4][1] == where | {"old": 2, "new": 1, "reason": "soft_limit"}
    assert events[6][1] == where | {
        "from": "cuda:0",
        "to": "cpu",
        "reason": "out of memory at the minimum batch size",
        "chunks": 1,
    }
    assert [events[i][1]["reason"] for i in (7, 8)] == ["grow", "grow"]
    assert events[0][1]["gpu"] == 0 and events[0][1]["waited_ms"] >= 0
    assert events[-1][1]["held_ms"] >= 0
    assert model.calls[-1] == ("cpu", 1)


def test_waiting_out_a_busy_gpu_once_then_only_trying(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory)
    executor = make_executor(tmp_path, memory, timeout_s=0.6)
    holder = LeasePool(tmp_path, FakeProbe(1), cuda_device=fake_cuda).lease(model="other")
    with holder:
        started = time.monotonic()
        first = executor.run(workload(model), items(2), use_gpu=True)
        waited = time.monotonic() - started
        started = time.monotonic()
        second = executor.run(workload(model), items(2), use_gpu=True)
        tried = time.monotonic() - started
    assert first.device == second.device == "cpu"
    assert "busy" in (first.gpu_error or "") and "other" in (first.gpu_error or "")
    assert waited >= 0.6 > 0.3 > tried
    third = executor.run(workload(model), items(2), use_gpu=True)
    assert third.device == "cuda:0"  # free again: taken at once


def test_policy_rejects_a_soft_limit_above_the_cap() -> None:
    with pytest.raises(ValueError):
        BatchPolicy(hard_cap_bytes=GIB, soft_limit_bytes=2 * GIB)
    with pytest.raises(ValueError):
        BatchPolicy(min_batch=0)

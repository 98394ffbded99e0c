"""A GPU held while it is fed: one lease and one hydration for a run of many windows.

The executor keeps its lease and the model resident on it between calls; it stages a model back
for another, and gives the GPU back when closed, when it idles, or when its holder dies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from connector.errors import GpuLeaseUnavailable
from connector.gpu import BatchPolicy, DeviceExecutor, LeasePool, Workload, read_leases
from tests.connector.gpu.test_lease import kill_holder_and_lease
from tests.fakes import (
    FakeDense,
    FakeMemory,
    FakeProbe,
    HungryModel,
    chunk,
    fake_cuda,
    simulated_gpu_job,
)
from tests.fakes import recording_telemetry as recording


def pool(state: Path, gpus: int = 1, timeout_s: float = 0.5) -> LeasePool:
    return LeasePool(state, FakeProbe(gpus), timeout_s=timeout_s, cuda_device=fake_cuda)


def executor(state: Path, memory: FakeMemory, telemetry=None, **kwargs) -> DeviceExecutor:
    gpus = kwargs.pop("gpus", 1)
    return DeviceExecutor(pool(state, gpus), BatchPolicy(), memory, telemetry, **kwargs)


def workload(model: HungryModel, name: str) -> Workload:
    return Workload(name=name, encode=model.encode, max_batch=16, move=model.to, size=len)


def texts(n: int) -> list[str]:
    return [f"t{i:03d}" for i in range(n)]


def events(exporter) -> list[tuple[str, dict]]:
    return [(e.name, dict(e.attributes)) for s in exporter.get_finished_spans() for e in s.events]


def test_many_windows_lease_once_and_hydrate_once(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory, cost=1)
    telemetry, exporter = recording()
    seen = []
    with telemetry.span("sync"), executor(tmp_path, memory, telemetry) as ex:
        for _ in range(20):
            outcome = ex.run(workload(model, "dense"), texts(40), use_gpu=True)
            assert outcome.device == "cuda:0" and outcome.cpu_batches == 0
            seen.append(read_leases(tmp_path))
        assert ex.held_device == "cuda:0"
    assert model.moves == ["cuda:0", "cpu"]  # hydrated once, staged back once, at the end
    assert all(len(records) == 1 and records[0].model == "dense" for records in seen)
    assert read_leases(tmp_path) == [] and ex.held_device is None
    names = [name for name, _ in events(exporter)]
    assert names == ["gpu_lease_acquired", "gpu_lease_released"]
    released = events(exporter)[-1][1]
    assert released["calls"] == 20 and released["model"] == "dense" and released["held_ms"] >= 0
    assert memory.caps == {"cuda:0": BatchPolicy().hard_cap_bytes}


def test_two_models_take_turns_one_resident_at_a_time(tmp_path: Path) -> None:
    memory = FakeMemory()
    dense = HungryModel(memory, cost=1)
    telemetry, exporter = recording()
    records = []

    class Peeking(HungryModel):
        def encode(self, items: Sequence[str]) -> list[str]:
            records.extend(r.model for r in read_leases(tmp_path))
            assert dense.device == "cpu"  # the other model left the GPU first
            return super().encode(items)

    sparse = Peeking(memory, cost=1)
    with telemetry.span("sync"), executor(tmp_path, memory, telemetry) as ex:
        for _ in range(3):
            ex.run(workload(dense, "dense"), texts(8), use_gpu=True)
            frees = memory.frees
            ex.run(workload(sparse, "sparse"), texts(8), use_gpu=True)
            assert memory.frees == frees + 1  # the cache emptied between the two models
    assert dense.moves == ["cuda:0", "cpu"] * 3
    assert sparse.moves == ["cuda:0", "cpu"] * 3
    assert set(records) == {"sparse"}  # the lease record names the model on the GPU
    names = [name for name, _ in events(exporter)]
    assert names.count("gpu_lease_acquired") == names.count("gpu_lease_released") == 1


def test_an_idle_gpu_is_given_back_and_another_holder_gets_it(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory, cost=1)
    ex = executor(tmp_path, memory, idle_release_s=0.3)
    ex.run(workload(model, "dense"), texts(4), use_gpu=True)
    (record,) = read_leases(tmp_path)
    assert record.model == "dense" and model.device == "cuda:0"
    with pytest.raises(GpuLeaseUnavailable):
        pool(tmp_path).lease(timeout_s=0.05).acquire()  # held between calls
    started = time.monotonic()
    with pool(tmp_path).lease(model="other", timeout_s=5):  # another holder waits for the idle
        waited = time.monotonic() - started
        assert model.moves == ["cuda:0", "cpu"] and ex.held_device is None
        # While the other holds it, this executor waits its timeout, then uses the CPU.
        outcome = ex.run(workload(model, "dense"), texts(4), use_gpu=True)
        assert outcome.device == "cpu" and "other" in (outcome.gpu_error or "")
    assert waited < 3
    again = ex.run(workload(model, "dense"), texts(4), use_gpu=True)
    assert again.device == "cuda:0"  # free again: a new lease
    ex.close()
    assert read_leases(tmp_path) == []


def test_idle_release_zero_gives_the_gpu_back_after_every_call(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory, cost=1)
    telemetry, exporter = recording()
    ex = executor(tmp_path, memory, telemetry, idle_release_s=0)
    with telemetry.span("sync"):
        for _ in range(3):
            ex.run(workload(model, "dense"), texts(4), use_gpu=True)
            assert read_leases(tmp_path) == []
    assert model.moves == ["cuda:0", "cpu"] * 3
    assert [n for n, _ in events(exporter)].count("gpu_lease_acquired") == 3


def test_a_call_for_another_gpu_trades_the_held_one(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory, cost=1)
    with executor(tmp_path, memory, gpus=2) as ex:
        ex.run(workload(model, "dense"), texts(4), use_gpu=True, device_ids=[0])
        ex.run(workload(model, "dense"), texts(4), use_gpu=True, device_ids=[0, 1])
        assert [r.device for r in read_leases(tmp_path)] == [0]  # still allowed: kept
        ex.run(workload(model, "dense"), texts(4), use_gpu=True, device_ids=[1])
        assert [r.device for r in read_leases(tmp_path)] == [1]
    assert model.moves == ["cuda:0", "cpu", "cuda:1", "cpu"]


class MovableDense(FakeDense):
    """A dense fake that visits the simulated GPU and peeks at the leases while there."""

    def __init__(self, state: Path) -> None:
        super().__init__()
        self.state = state
        self.moves: list[str] = []
        self.held: list[int] = []

    def to(self, device: str) -> None:
        self.moves.append(device)

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        self.held.append(len(read_leases(self.state)))
        return super().encode(texts)


def test_a_sync_job_gives_the_gpu_back_when_its_run_ends_and_when_closed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    dense = MovableDense(state)
    corpus = [chunk(str(i), f"text number {i}") for i in range(10)]
    job = simulated_gpu_job(tmp_path, [dense], corpus, batch_size=3)
    ex = job.executor
    with job:
        assert job.run().writes.upserted == 10
        assert dense.held == [1, 1, 1, 1] and dense.moves == ["cuda:0", "cpu"]
        assert read_leases(state) == []  # the run's end gave it back
        ex.run(workload(HungryModel(FakeMemory()), "x"), texts(2), use_gpu=True)
        assert len(read_leases(state)) == 1
    assert read_leases(state) == []  # closing the job gave it back


_HOLDER = """
import sys, time
from connector.gpu import BatchPolicy, DeviceExecutor, LeasePool, Workload
from tests.fakes import FakeMemory, FakeProbe, HungryModel, fake_cuda

pool = LeasePool(sys.argv[1], FakeProbe(1), holder="victim", cuda_device=fake_cuda)
executor = DeviceExecutor(pool, BatchPolicy(), FakeMemory(), idle_release_s=600)
model = HungryModel(executor.memory, cost=1)
work = Workload(name="bm42", encode=model.encode, max_batch=8, move=model.to)
executor.run(work, ["a", "b"], use_gpu=True)
print("held", flush=True)
time.sleep(120)
"""


def test_a_killed_holder_between_windows_frees_its_gpu(tmp_path: Path) -> None:
    kill_holder_and_lease(_HOLDER, tmp_path)  # no cleanup runs; the idle watcher dies with it


def test_the_cpu_never_runs_a_model_left_on_the_gpu(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungryModel(memory, cost=1)
    with executor(tmp_path, memory) as ex:
        ex.run(workload(model, "dense"), texts(4), use_gpu=True)
        assert model.device == "cuda:0"
        outcome = ex.run(workload(model, "dense"), texts(4), use_gpu=False)
        assert outcome.device == "cpu" and model.calls[-1] == ("cpu", 4)
        assert ex.held_device == "cuda:0"  # the lease stays for the next GPU call
        ex.run(workload(model, "dense"), texts(4), use_gpu=True)
    assert model.moves == ["cuda:0", "cpu", "cuda:0", "cpu"]


def test_threads_take_turns_on_the_held_gpu(tmp_path: Path) -> None:
    memory = FakeMemory()
    models = [HungryModel(memory, cost=1) for _ in range(2)]
    outcomes: list = []

    def feed(model: HungryModel, name: str) -> None:
        for _ in range(10):
            outcomes.append(ex.run(workload(model, name), texts(8), use_gpu=True))

    with executor(tmp_path, memory) as ex:
        threads = [threading.Thread(target=feed, args=(m, f"m{i}")) for i, m in enumerate(models)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(outcomes) == 20
    assert all(o.results == [f"v({t})" for t in texts(8)] and o.cpu_batches == 0 for o in outcomes)
    assert all(m.device == "cpu" and m.moves[-1] == "cpu" for m in models)
    assert read_leases(tmp_path) == []

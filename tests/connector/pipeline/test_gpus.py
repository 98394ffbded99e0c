"""Every leasable GPU at once: a sync's dense stage on several simulated GPUs, each under its own
lease, with a copy of the model each; a GPU held elsewhere is left alone until it is free."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from connector.errors import ModelError
from connector.gpu import BatchPolicy, DeviceExecutor, LeasePool, read_leases
from connector.pipeline.stages import DenseStage
from connector.wiring import SyncJob
from tests.fakes import GIB, FakeDense, FakeMemory, FakeProbe, chunk, fake_cuda, simulated_gpu_job
from tests.fakes import recording_telemetry as recording

CORPUS = [chunk(str(i), f"report {i} on the flutter of wing {i % 7}") for i in range(40)]


class SpreadDense(FakeDense):
    """A dense fake that copies itself for each further GPU. Every copy notes, in one shared
    log, where it ran, how many texts, and which GPUs were leased while it ran.

    Args:
        state: Where the leases are (to read them while encoding).
        memory: The simulated device memory; with ``cost``, a batch needs ``cost`` bytes a text
            there and runs out of memory past the device's hard cap.
        hydrate_error: Raised when a copy made for another GPU (not the first) moves to one.
        fail_on_call: The call (1-based, over every copy) that raises a ``ModelError``.
        on_call: Called with the call's number before each call encodes.
    """

    def __init__(
        self,
        state: Path,
        memory: FakeMemory | None = None,
        cost: int = 0,
        *,
        hydrate_error: type[Exception] | None = None,
        fail_on_call: int | None = None,
        on_call: Callable[[int], None] | None = None,
        log: list[tuple[str, int, list[int]]] | None = None,
        copy: bool = False,
        batch_size: int = 4,
    ) -> None:
        super().__init__()
        self.state = state
        self.memory = memory or FakeMemory()
        self.cost = cost
        self.hydrate_error = hydrate_error if copy else None
        self._hydrate_error = hydrate_error
        self.fail_on_call = fail_on_call
        self.on_call = on_call
        self.log = log if log is not None else []
        self.batch_size = batch_size
        self.device = "cpu"
        self.copies: list[SpreadDense] = []

    def replica(self) -> SpreadDense:
        twin = SpreadDense(
            self.state,
            self.memory,
            self.cost,
            hydrate_error=self._hydrate_error,
            fail_on_call=self.fail_on_call,
            on_call=self.on_call,
            log=self.log,
            copy=True,
            batch_size=self.batch_size,
        )
        self.copies.append(twin)
        return twin

    def to(self, device: str) -> None:
        if device != "cpu" and self.hydrate_error is not None:
            raise self.hydrate_error("cannot hydrate")
        self.device = device

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        import torch

        held = sorted(record.device for record in read_leases(self.state))
        self.log.append((self.device, len(texts), held))
        if self.on_call is not None:
            self.on_call(len(self.log))
        if self.fail_on_call == len(self.log):
            raise ModelError("dense model 'fake': cannot load")
        if self.device != "cpu" and self.cost:
            if self.cost * len(texts) > self.memory.budget(self.device):
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return super().encode(texts)

    def devices(self) -> set[str]:
        return {device for device, _, _ in self.log}


def job(tmp_path: Path, dense: FakeDense, *, gpus: int = 2, **kwargs: Any) -> SyncJob:
    """A sync of ``CORPUS`` in windows of 4, its dense stage on ``gpus`` simulated GPUs."""
    return simulated_gpu_job(tmp_path, [dense], CORPUS, gpus=gpus, **kwargs)


_PER_RUN = {"run_id", "synced_at"}


def stored(built: SyncJob) -> dict[str, tuple[Any, Any]]:
    points, _ = built.store.scroll(built.writer.collection, limit=100, with_vectors=True)
    return {
        str(p.id): (p.vector, {k: v for k, v in (p.payload or {}).items() if k not in _PER_RUN})
        for p in points
    }


def events(exporter: Any) -> list[tuple[str, dict]]:
    return [(e.name, dict(e.attributes)) for s in exporter.get_finished_spans() for e in s.events]


def test_two_gpus_share_every_window_each_under_its_own_lease(tmp_path: Path) -> None:
    state = tmp_path / "state"
    dense = SpreadDense(state)
    leases: list[list[tuple[int, int, str]]] = []

    def peek(_call: int) -> None:
        leases.append([(r.device, r.pid, r.model) for r in read_leases(state)])

    dense.on_call = peek
    telemetry, exporter = recording()
    # The releases come after the run's span: this one catches them.
    with telemetry.span("job"), job(tmp_path, dense, telemetry=telemetry) as built:
        report = built.run()
        stage = built.syncer.dense_stage
        assert read_leases(state) == []  # the run's end gave both back
        assert len(stage.executors) == 2 and len(dense.copies) == 1  # one copy for GPU 1
    assert report.writes.upserted == len(CORPUS)
    # Each window of 4 split in two halves, one per GPU, while both GPUs were leased.
    assert dense.devices() == {"cuda:0", "cuda:1"}
    assert sorted(n for _, n, _ in dense.log) == [2] * 20
    assert all(held == [0, 1] for _, _, held in dense.log)
    pid = os.getpid()
    assert all(sorted(seen) == [(0, pid, "fake"), (1, pid, "fake")] for seen in leases)
    names = [name for name, _ in events(exporter)]
    assert names.count("gpu_lease_acquired") == names.count("gpu_lease_released") == 2
    assert "fallback" not in names
    spans = [dict(s.attributes) for s in exporter.get_finished_spans() if s.name == "dense_model"]
    assert {s["device"] for s in spans} == {"cuda:0,cuda:1"}
    assert all(s["gpu_batches"] == 2 and s["chunk_count"] == 4 for s in spans)


def test_the_points_are_those_of_a_one_gpu_run(tmp_path: Path) -> None:
    results = {}
    for gpus in (1, 2, 3):
        where = tmp_path / f"gpus-{gpus}"
        dense = SpreadDense(where / "state")
        with job(where, dense, gpus=gpus) as built:
            built.run()
            results[gpus] = stored(built)
        assert len(dense.devices()) == gpus
    assert len(results[1]) == len(CORPUS)
    assert results[2] == results[1] and results[3] == results[1]


def test_a_gpu_held_by_another_holder_is_skipped_without_waiting(tmp_path: Path) -> None:
    state = tmp_path / "state"
    dense = SpreadDense(state)
    other = LeasePool(state, FakeProbe(2), holder="other", cuda_device=fake_cuda)
    telemetry, exporter = recording()
    held = other.lease([0], model="bm42", timeout_s=0)
    with held, job(tmp_path, dense, telemetry=telemetry) as built:
        started = time.monotonic()
        report = built.run()
        took = time.monotonic() - started
        assert [r.holder for r in read_leases(state)] == ["other"]
    assert report.status == "succeeded" and report.writes.upserted == len(CORPUS)
    assert took < 4  # the lease timeout is 5 s: nobody waited for GPU 0
    assert dense.devices() == {"cuda:1"}
    assert sum(n for _, n, _ in dense.log) == len(CORPUS)
    names = [name for name, _ in events(exporter)]
    assert "fallback" not in names and names.count("gpu_lease_acquired") == 1


def test_a_gpu_freed_during_the_run_is_picked_up_at_the_next_window(tmp_path: Path) -> None:
    state = tmp_path / "state"
    other = LeasePool(state, FakeProbe(2), holder="other", cuda_device=fake_cuda)
    lease = other.lease([1], model="bm42", timeout_s=0).acquire()

    def free_after_three(call: int) -> None:
        if call == 3:
            lease.release()

    dense = SpreadDense(state, on_call=free_after_three)
    with job(tmp_path, dense) as built:
        assert built.run().writes.upserted == len(CORPUS)
    devices = [device for device, _, _ in dense.log]
    assert devices[:3] == ["cuda:0"] * 3  # whole windows on GPU 0 while GPU 1 was held
    assert devices.count("cuda:1") == 10 - 3  # then half of every later window
    assert read_leases(state) == []


def test_every_gpu_is_given_back_after_a_failed_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    dense = SpreadDense(state, fail_on_call=7)
    with job(tmp_path, dense, record=True) as built:
        with pytest.raises(ModelError, match="cannot load"):
            built.run()
        assert read_leases(state) == []
        assert built.syncer.record is not None and built.syncer.record.status == "failed"
    assert dense.devices() == {"cuda:0", "cuda:1"}


def test_the_manifest_lists_every_gpu_that_did_dense_work(tmp_path: Path) -> None:
    dense = SpreadDense(tmp_path / "state")
    with job(tmp_path, dense, record=True) as built:
        report = built.run()
    assert [d.device for d in report.devices] == ["cuda:0", "cuda:1"]


def test_oom_halving_happens_per_gpu_with_its_events(tmp_path: Path) -> None:
    memory = FakeMemory()
    # 2 GiB a text under the 12 GiB cap: a batch of 8 runs out of memory, 4 fit.
    dense = SpreadDense(tmp_path / "state", memory, cost=2 * GIB, batch_size=8)
    telemetry, exporter = recording()
    with job(tmp_path, dense, memory=memory, telemetry=telemetry) as built:
        built.syncer.batch_size = 16  # 8 texts a GPU a window
        assert built.run().writes.upserted == len(CORPUS)
        executors = built.syncer.dense_stage.executors
    found = events(exporter)
    ooms = {a["device"] for name, a in found if name == "gpu_oom"}
    halved = {a["device"] for name, a in found if name == "batch_size_changed"}
    assert ooms == halved == {"cuda:0", "cuda:1"}
    tallies = {device: tally.ooms for e in executors for device, tally in e.usage.items()}
    assert set(tallies) == {"cuda:0", "cuda:1"} and min(tallies.values()) >= 1
    assert "cpu" not in dense.devices()  # halving was enough on both


def test_a_gpu_that_cannot_take_its_copy_falls_back_to_the_cpu(tmp_path: Path) -> None:
    # The copy for GPU 1 cannot hydrate: its parts run on the CPU, with the usual event.
    dense = SpreadDense(tmp_path / "state", hydrate_error=RuntimeError)
    telemetry, exporter = recording()
    with job(tmp_path, dense, telemetry=telemetry) as built:
        assert built.run().writes.upserted == len(CORPUS)
        points = stored(built)
    fallbacks = [a for name, a in events(exporter) if name == "fallback"]
    assert fallbacks and {(a["from"], a["to"]) for a in fallbacks} == {("cuda:1", "cpu")}
    assert dense.devices() == {"cuda:0", "cpu"}
    with job(tmp_path / "one", SpreadDense(tmp_path / "one" / "state"), gpus=1) as single:
        single.run()
        assert stored(single) == points


def test_a_model_that_cannot_copy_itself_stays_on_one_gpu(tmp_path: Path) -> None:
    state = tmp_path / "state"

    class Single(SpreadDense):
        replica = None  # type: ignore[assignment]

    dense = Single(state)
    with job(tmp_path, dense) as built:
        built.run()
    assert dense.devices() == {"cuda:0"} and all(held == [0] for _, _, held in dense.log)


def test_parts_run_at_the_same_time(tmp_path: Path) -> None:
    # Each GPU's part waits until the other's has started: they only finish side by side.
    started = threading.Barrier(2, timeout=5)

    class Meeting(SpreadDense):
        def encode(self, texts: Sequence[str]) -> list[list[float]]:
            started.wait()
            return super().encode(texts)

        def replica(self) -> SpreadDense:
            twin = Meeting(self.state, log=self.log, copy=True)
            self.copies.append(twin)
            return twin

    memory = FakeMemory()
    pool = LeasePool(tmp_path, FakeProbe(2), timeout_s=5, cuda_device=fake_cuda)
    executor = DeviceExecutor(pool, BatchPolicy(), memory, idle_release_s=60)
    dense = Meeting(tmp_path)
    with executor, DenseStage(executor, use_gpu=True) as stage:
        texts = [f"text {i}" for i in range(8)]
        assert stage.encode(dense, texts) == FakeDense().encode(texts)
    assert dense.devices() == {"cuda:0", "cuda:1"}
    assert read_leases(tmp_path) == []


def test_hold_now_takes_a_free_gpu_and_never_waits_for_a_busy_one(tmp_path: Path) -> None:
    pool = LeasePool(tmp_path, FakeProbe(1), timeout_s=5, cuda_device=fake_cuda)
    telemetry, exporter = recording()
    with telemetry.span("sync"):
        executor = DeviceExecutor(pool, BatchPolicy(), FakeMemory(), telemetry)
        assert executor.hold_now("m") == "cuda:0" == executor.hold_now("m")
        sibling = executor.sibling()
        assert sibling.pool is pool and sibling.policy is executor.policy
        started = time.monotonic()
        assert sibling.hold_now("m") is None  # busy: no wait, no fallback
        assert time.monotonic() - started < 1
        executor.close()
        assert sibling.hold_now("m", [0]) == "cuda:0"
        sibling.close()
        assert DeviceExecutor().hold_now("m") is None  # no pool: the CPU only
    names = [name for name, _ in events(exporter)]
    assert names == ["gpu_lease_acquired", "gpu_lease_released"] * 2
    assert read_leases(tmp_path) == []


def stage_on(tmp_path: Path, gpus: int) -> DenseStage:
    pool = LeasePool(tmp_path, FakeProbe(gpus), timeout_s=5, cuda_device=fake_cuda)
    return DenseStage(DeviceExecutor(pool, BatchPolicy(), FakeMemory()), use_gpu=True)


def test_a_call_takes_no_more_gpus_than_it_has_texts(tmp_path: Path) -> None:
    dense = SpreadDense(tmp_path)
    with stage_on(tmp_path, 3) as stage:
        assert stage.encode(dense, ["a b", "c d"]) == FakeDense().encode(["a b", "c d"])
        assert len(read_leases(tmp_path)) == 2
        stage.executor.close()
    assert sorted(n for _, n, _ in dense.log) == [1, 1] and len(dense.devices()) == 2


def test_a_plug_in_is_built_once_more_for_each_further_gpu(tmp_path: Path) -> None:
    from connector.dense import PluginEncoder
    from connector.settings import DenseModelConfig

    spec = "connector.dense_plugins:RateEncoder"
    plugin = PluginEncoder(DenseModelConfig(encoder=spec, name="vec", options={"dim": 8}))
    texts = [f"text {i}" for i in range(10)]
    with stage_on(tmp_path, 2) as stage:
        vectors = stage.encode(plugin, texts)
        stage.executor.close()
    assert vectors == plugin.encode(texts)
    assert {device for e in stage.executors for device in e.usage} == {"cuda:0", "cuda:1"}
    copy = plugin.replica()
    assert copy.encoder is not plugin.encoder and copy.signature == plugin.signature


def test_without_a_gpu_or_a_way_to_move_the_model_runs_on_the_cpu(tmp_path: Path) -> None:
    texts = ["a b", "c d", "e f"]
    with stage_on(tmp_path, 0) as stage:  # GPUs enabled, none found
        dense = SpreadDense(tmp_path)
        assert stage.encode(dense, texts) == FakeDense().encode(texts)
        assert dense.devices() == {"cpu"}
        still = FakeDense()  # no `to`: never leases a GPU
        assert stage.encode(still, texts) == FakeDense().encode(texts)
    assert stage.executors == [stage.executor] and read_leases(tmp_path) == []


def test_a_gpu_two_executors_held_in_turn_is_one_manifest_entry() -> None:
    from connector.gpu._executor import DeviceTally
    from connector.settings import GpuSettings
    from connector.wiring import device_usage

    first, second = DeviceExecutor(), DeviceExecutor()
    first.usage["cuda:0"] = DeviceTally(peak_bytes=2 * GIB, soft_limit_hits=1)
    second.usage["cuda:0"] = DeviceTally(peak_bytes=GIB, soft_limit_hits=2)
    second.usage["cuda:1"] = DeviceTally(peak_bytes=GIB)
    (zero, one) = device_usage([first, second], GpuSettings())
    assert (zero.device, zero.peak_vram_mb, zero.soft_limit_exceedances) == ("cuda:0", 2048, 3)
    assert (one.device, one.peak_vram_mb, one.soft_limit_exceedances) == ("cuda:1", 1024, 0)

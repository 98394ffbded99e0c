"""GPU leases: exclusive per GPU across processes, freed by a dead holder, readable by others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connector.errors import GpuLeaseUnavailable
from connector.gpu import LeasePool, lease_dir, read_leases
from tests.fakes import GIB, FakeProbe, fake_cuda
from tests.paths import REPO

REPO = REPO


def pool(tmp_path: Path, gpus: int = 1, **kwargs) -> LeasePool:
    kwargs.setdefault("cuda_device", fake_cuda)
    kwargs.setdefault("holder", "test")
    return LeasePool(tmp_path, kwargs.pop("probe", FakeProbe(gpus)), **kwargs)


def python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=REPO, env=env, text=True, **kwargs
    )


def test_a_lease_is_recorded_while_held_and_gone_after(tmp_path: Path) -> None:
    with pool(tmp_path).lease([0], model="bm42", vram_bytes=12 * GIB) as lease:
        assert lease.held and lease.device == "cuda:0"
        (record,) = read_leases(tmp_path)
        assert record == lease.record
        assert (record.device, record.holder, record.pid, record.model) == (
            0,
            "test",
            os.getpid(),
            "bm42",
        )
        assert record.vram_reserved == 12 * GIB and record.device_name == "Simulated GPU"
        assert record.started_at.endswith("+00:00")
    assert not lease.held
    assert read_leases(tmp_path) == []
    assert (lease_dir(tmp_path) / "gpu-0.lock").read_bytes() == b""


def test_vram_reserved_is_at_most_the_device(tmp_path: Path) -> None:
    with pool(tmp_path).lease(vram_bytes=64 * GIB) as lease:
        assert lease.record is not None and lease.record.vram_reserved == 16 * GIB


def test_leaving_the_block_by_an_error_releases(tmp_path: Path) -> None:
    with pytest.raises(KeyError), pool(tmp_path).lease():
        raise KeyError("boom")
    assert read_leases(tmp_path) == []
    with pool(tmp_path).lease(timeout_s=0):
        pass


def test_one_holder_per_gpu_in_one_process_too(tmp_path: Path) -> None:
    leases = pool(tmp_path)
    with leases.lease([0], model="dense"):
        started = time.monotonic()
        with pytest.raises(GpuLeaseUnavailable, match=r"GPU \[0\] busy for 0.2s.*test \(pid"):
            leases.lease([0], timeout_s=0.2).acquire()
        assert time.monotonic() - started >= 0.2


def test_device_ids_narrow_the_choice(tmp_path: Path) -> None:
    leases = pool(tmp_path, gpus=3)
    with leases.lease([2]) as lease:
        assert lease.device == "cuda:2" and lease.info is not None and lease.info.index == 2
    with pytest.raises(GpuLeaseUnavailable, match=r"device_ids \[5, 7\]: no such GPU.*\[0, 1, 2\]"):
        leases.lease([7, 5]).acquire()


def test_two_leases_take_two_gpus_the_freest_first(tmp_path: Path) -> None:
    leases = pool(tmp_path, probe=FakeProbe(2, used={0: 8 * GIB}))
    with leases.lease() as first, leases.lease(timeout_s=0) as second:
        assert (first.device, second.device) == ("cuda:1", "cuda:0")
        assert [r.device for r in read_leases(tmp_path)] == [0, 1]


def test_no_gpu_or_none_usable(tmp_path: Path) -> None:
    with pytest.raises(GpuLeaseUnavailable, match="no GPU found"):
        pool(tmp_path, gpus=0).lease().acquire()
    hidden = pool(tmp_path, cuda_device=lambda info: None)
    with pytest.raises(GpuLeaseUnavailable, match="not usable by this process"):
        hidden.lease().acquire()


def test_a_record_left_without_its_lock_is_history(tmp_path: Path) -> None:
    folder = lease_dir(tmp_path)
    folder.mkdir(parents=True)
    stale = {"device": 0, "device_name": "x", "holder": "gone", "pid": 1, "model": "m"}
    (folder / "gpu-0.lock").write_text(json.dumps(stale | {"started_at": "", "vram_reserved": 0}))
    assert read_leases(tmp_path) == []
    with pool(tmp_path).lease(timeout_s=0) as lease:
        assert read_leases(tmp_path) == [lease.record]


def test_records_with_more_or_less_than_known_are_read_or_skipped(tmp_path: Path) -> None:
    leases = pool(tmp_path, gpus=2)
    with leases.lease([0]) as newer, leases.lease([1]) as broken:
        path = lease_dir(tmp_path) / "gpu-0.lock"
        record = json.loads(path.read_text())
        path.write_text(json.dumps(record | {"priority": 3}))  # a later version's extra key
        (lease_dir(tmp_path) / "gpu-1.lock").write_text('{"device": 1}')
        assert read_leases(tmp_path) == [newer.record]
        assert broken.held


def test_a_lease_is_taken_once(tmp_path: Path) -> None:
    with pool(tmp_path).lease() as lease, pytest.raises(RuntimeError, match="held already"):
        lease.acquire()


_WORKER = """
import json, os, sys, time
from connector.gpu import LeasePool
from tests.fakes import FakeProbe, fake_cuda

state, marker, go, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
pool = LeasePool(state, FakeProbe(1), timeout_s=60, holder="worker", cuda_device=fake_cuda,
                 poll_s=0.002)
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)
held, clashes = [], 0
for _ in range(rounds):
    with pool.lease([0], model="m"):
        start = time.monotonic()
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            clashes += 1
        else:
            os.close(fd)
            time.sleep(0.005)
            os.unlink(marker)
        held.append((start, time.monotonic()))
print(json.dumps({"clashes": clashes, "held": held}), flush=True)
"""


def test_processes_never_hold_one_gpu_together(tmp_path: Path) -> None:
    marker, go = tmp_path / "inside", tmp_path / "go"
    workers = [
        python(_WORKER, str(tmp_path / "state"), str(marker), str(go), "15", stdout=subprocess.PIPE)
        for _ in range(3)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        go.touch()
        reports = [json.loads(worker.communicate(timeout=120)[0]) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    assert [r["clashes"] for r in reports] == [0, 0, 0]
    spans = sorted(span for r in reports for span in r["held"])
    assert len(spans) == 45
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, "two processes held GPU 0 at once"


_HOLDER = """
import sys, time
from connector.gpu import LeasePool
from tests.fakes import FakeProbe, fake_cuda

pool = LeasePool(sys.argv[1], FakeProbe(1), holder="victim", cuda_device=fake_cuda)
pool.lease([0], model="bm42").acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_killed_holder_frees_its_gpu(tmp_path: Path) -> None:
    kill_holder_and_lease(_HOLDER, tmp_path)


def kill_holder_and_lease(code: str, tmp_path: Path) -> None:
    """Runs ``code``, a holder of GPU 0 for ``bm42`` as ``victim`` that prints ``held``, kills
    it with SIGKILL, and takes the GPU after it."""
    holder = python(code, str(tmp_path), stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        (record,) = read_leases(tmp_path)
        assert (record.pid, record.holder, record.model) == (holder.pid, "victim", "bm42")
        with pytest.raises(GpuLeaseUnavailable, match=rf"victim \(pid {holder.pid}, bm42\)"):
            pool(tmp_path).lease([0], timeout_s=0.1).acquire()
        holder.kill()  # SIGKILL: no cleanup of any kind runs in the holder
        holder.wait(timeout=30)
    finally:
        holder.kill()
        if holder.stdout is not None:
            holder.stdout.close()
    assert read_leases(tmp_path) == []
    with pool(tmp_path).lease([0], timeout_s=5) as lease:
        assert lease.record is not None and lease.record.pid == os.getpid()


_FORKING_HOLDER = """
import os, sys, time
from connector.gpu import LeasePool
from tests.fakes import FakeProbe, fake_cuda

pool = LeasePool(sys.argv[1], FakeProbe(1), holder="parent", cuda_device=fake_cuda)
pool.lease([0], model="dense").acquire()
child = os.fork()  # a worker process, started while the GPU is leased
if child == 0:
    time.sleep(120)
    os._exit(0)
print(child, flush=True)
time.sleep(120)
"""


def test_a_forked_child_does_not_keep_a_killed_parents_gpu(tmp_path: Path) -> None:
    holder = python(_FORKING_HOLDER, str(tmp_path), stdout=subprocess.PIPE)
    child = 0
    try:
        assert holder.stdout is not None
        child = int(holder.stdout.readline())
        assert [r.pid for r in read_leases(tmp_path)] == [holder.pid]
        holder.kill()
        holder.wait(timeout=30)
        with pool(tmp_path).lease([0], timeout_s=5) as lease:  # the child lives on
            assert lease.held
    finally:
        holder.kill()
        if child:
            os.kill(child, 9)
        if holder.stdout is not None:
            holder.stdout.close()

"""Exclusive GPU leases across the processes of one host.

One lock file per GPU, ``<state_dir>/leases/gpu-<index>.lock``, held with ``fcntl.flock``: the
kernel drops the lock when its holder exits, however it exits, so a killed process frees its GPU
without anyone cleaning up. While held, the file carries a JSON record of the lease (holder, pid,
model, start, VRAM reserved) that other processes read with :func:`read_leases`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from connector.errors import GpuLeaseUnavailable
from connector.gpu._probe import DeviceInfo, DeviceProbe, NvmlProbe

__all__ = ["GpuLease", "LeasePool", "LeaseRecord", "lease_dir", "read_leases"]

log = logging.getLogger(__name__)

_POLL_S = 0.05

# Leases held in this process. A forked child gets copies of their locked descriptors, which
# would keep a GPU locked after this process dies; the child drops its copies at once.
_HELD: set[GpuLease] = set()


def _forget_in_child() -> None:
    for lease in list(_HELD):
        lease._forget()


os.register_at_fork(after_in_child=_forget_in_child)


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """Who holds a GPU, as written in its lock file."""

    device: int
    """NVML index of the GPU (as ``nvidia-smi`` numbers it)."""
    device_name: str
    holder: str
    """What holds it, e.g. ``connector sync``."""
    pid: int
    model: str
    """The model running under the lease."""
    started_at: str
    """UTC, ISO 8601."""
    vram_reserved: int
    """Bytes the holder may allocate (its hard cap, at most the device's memory)."""


def lease_dir(state_dir: Path | str) -> Path:
    """Where the lock files of ``state_dir`` live."""
    return Path(state_dir) / "leases"


def _lock_path(state_dir: Path | str, index: int) -> Path:
    return lease_dir(state_dir) / f"gpu-{index}.lock"


def read_leases(state_dir: Path | str) -> list[LeaseRecord]:
    """The leases held now, by GPU index; a record left by a dead holder is not listed.

    Args:
        state_dir: The state folder the lease pools use.
    """
    records = []
    for path in sorted(lease_dir(state_dir).glob("gpu-*.lock")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                record = _parse(os.pread(fd, 1 << 16, 0))
                if record is not None:
                    records.append(record)
            else:  # nobody holds it: whatever the file says is history
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    return sorted(records, key=lambda r: r.device)


def _parse(data: bytes) -> LeaseRecord | None:
    # A holder that has just locked may not have written its record yet; a newer version may
    # have written more than this one knows.
    try:
        raw = json.loads(data.decode("utf-8"))
        return LeaseRecord(**{name: raw[name] for name in LeaseRecord.__dataclass_fields__})
    except (ValueError, TypeError, KeyError):
        return None


def _cuda_device_for(info: DeviceInfo) -> str | None:
    from connector.gpu._cuda import cuda_device_for

    return cuda_device_for(info)


class GpuLease:
    """Exclusive use of one GPU while the ``with`` block runs (acquired on entry).

    Attributes:
        device: The torch device of the GPU in this process (``cuda:0``), once acquired.
        info: What the probe said about the GPU when it was leased.
        record: What other processes read about this lease.
        waited_s: How long acquiring took.
    """

    def __init__(
        self,
        pool: LeasePool,
        device_ids: Sequence[int] | None,
        model: str,
        timeout_s: float,
        vram_bytes: int | None,
    ) -> None:
        self._pool = pool
        self._device_ids = list(device_ids) if device_ids is not None else None
        self._model = model
        self._timeout_s = timeout_s
        self._vram_bytes = vram_bytes
        self._fd: int | None = None
        self.device = ""
        self.info: DeviceInfo | None = None
        self.record: LeaseRecord | None = None
        self.waited_s = 0.0
        self.timed_out = False
        """Whether the last :meth:`acquire` gave up because every allowed GPU stayed busy."""

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> GpuLease:
        """Waits until one of the allowed GPUs is free and takes it.

        Raises:
            GpuLeaseUnavailable: No such GPU, none usable by this process, or all busy past the
                timeout.
        """
        if self._fd is not None:
            raise RuntimeError("this lease is held already")
        started = time.monotonic()
        self.timed_out = False
        candidates = self._pool.candidates(self._device_ids)
        deadline = started + self._timeout_s
        while True:
            for info, device in candidates:
                fd = self._pool.try_lock(info.index)
                if fd is None:
                    continue
                try:
                    self.record = self._pool.write_record(fd, info, self._model, self._vram_bytes)
                except OSError as exc:
                    os.close(fd)  # closing drops the lock
                    raise GpuLeaseUnavailable(f"lease record of GPU {info.index}: {exc}") from exc
                self._fd, self.info, self.device = fd, info, device
                _HELD.add(self)
                self.waited_s = time.monotonic() - started
                log.info(
                    "leased GPU %d (%s) for %s after %.2fs",
                    info.index,
                    device,
                    self._model,
                    self.waited_s,
                )
                return self
            if time.monotonic() >= deadline:
                self.timed_out = True
                raise GpuLeaseUnavailable(self._pool.busy_message(candidates, self._timeout_s))
            time.sleep(min(self._pool.poll_s, max(0.0, deadline - time.monotonic())))

    def note_model(self, model: str) -> None:
        """Rewrites the record of a held lease for the model now running under it."""
        if self._fd is None or self.record is None or self.record.model == model:
            return
        self.record = replace(self.record, model=model)
        self._pool.write(self._fd, self.record)

    def release(self) -> None:
        """Gives the GPU back; a lease not held is left alone."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _HELD.discard(self)
        try:
            os.ftruncate(fd, 0)  # the record goes before the lock, so nobody reads a stale one
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        log.debug("released GPU %s", self.info.index if self.info else "?")

    def _forget(self) -> None:
        """In a forked child: closes the copy of the lock, which stays with the parent."""
        fd, self._fd = self._fd, None
        _HELD.discard(self)
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> GpuLease:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class LeasePool:
    """Hands out :class:`GpuLease` objects for the GPUs of this host.

    Args:
        state_dir: Folder whose ``leases/`` holds the lock files (shared by every process).
        probe: Lists the GPUs (default: NVML).
        timeout_s: How long :meth:`lease` waits for a busy GPU by default.
        holder: Written into the records, e.g. ``connector sync``.
        cuda_device: Maps a probed GPU to its torch device in this process, or ``None`` when this
            process cannot use it (hidden by ``CUDA_VISIBLE_DEVICES``, CPU-only torch).
        poll_s: Pause between attempts while every allowed GPU is busy.
    """

    def __init__(
        self,
        state_dir: Path | str,
        probe: DeviceProbe | None = None,
        *,
        timeout_s: float = 10.0,
        holder: str | None = None,
        cuda_device: Callable[[DeviceInfo], str | None] | None = None,
        poll_s: float = _POLL_S,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.probe = probe if probe is not None else NvmlProbe()
        self.timeout_s = timeout_s
        self.holder = holder or Path(sys.argv[0]).name or "python"
        self.cuda_device = cuda_device or _cuda_device_for
        self.poll_s = poll_s

    def lease(
        self,
        device_ids: Sequence[int] | None = None,
        *,
        model: str = "",
        timeout_s: float | None = None,
        vram_bytes: int | None = None,
    ) -> GpuLease:
        """A lease of one of ``device_ids`` (any GPU when ``None``), taken on ``with`` entry.

        Args:
            device_ids: NVML indices the caller may use.
            model: The model that will run, for the record.
            timeout_s: Overrides the pool's wait for this lease.
            vram_bytes: The most the holder will allocate (its hard cap), for the record;
                ``None``: the whole device.
        """
        wait = self.timeout_s if timeout_s is None else timeout_s
        return GpuLease(self, device_ids, model, wait, vram_bytes)

    # -- used by GpuLease ----------------------------------------------------------------------

    def candidates(self, device_ids: Sequence[int] | None) -> list[tuple[DeviceInfo, str]]:
        """Allowed, usable GPUs with their torch devices, the most free memory first.

        Raises:
            GpuLeaseUnavailable: There is none.
        """
        devices = self.probe.devices()
        if not devices:
            raise GpuLeaseUnavailable("no GPU found (NVML reports no device)")
        if device_ids is not None:
            allowed = set(device_ids)
            chosen = [d for d in devices if d.index in allowed]
            if not chosen:
                found = sorted(d.index for d in devices)
                raise GpuLeaseUnavailable(
                    f"gpu.device_ids {sorted(allowed)}: no such GPU (this host has {found})"
                )
            devices = chosen
        usable = []
        for info in devices:
            device = self.cuda_device(info)
            if device is not None:
                usable.append((info, device))
        if not usable:
            indices = sorted(d.index for d in devices)
            raise GpuLeaseUnavailable(
                f"GPU {indices} not usable by this process (CUDA_VISIBLE_DEVICES hides it, or "
                "torch is a CPU build)"
            )
        return sorted(usable, key=lambda pair: -pair[0].free_bytes)

    def try_lock(self, index: int) -> int | None:
        """The locked file descriptor of GPU ``index``, or ``None`` when another holds it."""
        path = _lock_path(self.state_dir, index)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise GpuLeaseUnavailable(f"lease file {path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise GpuLeaseUnavailable(f"lease file {path}: {exc.strerror}") from exc
        return fd

    def write_record(
        self, fd: int, info: DeviceInfo, model: str, vram_bytes: int | None
    ) -> LeaseRecord:
        cap = vram_bytes if vram_bytes is not None else info.total_bytes
        record = LeaseRecord(
            device=info.index,
            device_name=info.name,
            holder=self.holder,
            pid=os.getpid(),
            model=model,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            vram_reserved=min(cap, info.total_bytes),
        )
        self.write(fd, record)
        return record

    def write(self, fd: int, record: LeaseRecord) -> None:
        """Replaces the record in the locked file ``fd``."""
        data = json.dumps(asdict(record), sort_keys=True).encode("utf-8")
        # Written over the old one, then cut to length: a reader never finds the file empty.
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))

    def busy_message(self, candidates: list[tuple[DeviceInfo, str]], timeout_s: float) -> str:
        indices = sorted(info.index for info, _ in candidates)
        holders = {r.device: r for r in read_leases(self.state_dir)}
        who = [
            f"GPU {i}: {holders[i].holder} (pid {holders[i].pid}, {holders[i].model})"
            for i in indices
            if i in holders
        ]
        detail = f"; held by {', '.join(who)}" if who else ""
        return f"GPU {indices} busy for {timeout_s:g}s{detail}"

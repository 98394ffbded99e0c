"""Runs one model over a list of items: on a leased GPU with adaptive batches, else the CPU.

The path of one call::

    the GPU held from an earlier call, else lease one (wait up to the timeout)  ── none ──────┐
      (a fresh lease: set the hard cap)                                                       │
      another model resident: stage it back, empty the cache; hydrate this one                │
      adaptive batches (halve on OOM / soft limit, grow back)                                 │
      anything left for the CPU: stage back, empty the cache, release the lease               │
    the CPU: batches left over (OOM at the minimum size, other errors)  ◄────────────────────┘
    what still fails: ``outcome.failures`` (the sparse stage's metadata fallback takes it)

Between calls the lease and the resident model stay, so a sync that feeds the GPU window after
window leases it and hydrates its model once. They go when the executor is closed, when the GPU
has idled for ``idle_release_s`` (a background thread watches), or when a call leaves work for
the CPU; a process killed outright frees the GPU anyway (the kernel drops its lock).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import TypeVar

from connector.errors import GpuLeaseUnavailable, ModelError
from connector.gpu._batching import (
    AdaptiveBatcher,
    BatchOutcome,
    BatchPolicy,
    Workload,
    failure_reason,
)
from connector.gpu._cuda import CudaMemory, DeviceMemory
from connector.gpu._lease import GpuLease, LeasePool
from connector.gpu._staging import staged
from connector.telemetry import Telemetry

__all__ = ["BUSY_COOLDOWN_S", "DEFAULT_IDLE_RELEASE_S", "DeviceExecutor"]

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

BUSY_COOLDOWN_S = 30.0
"""After waiting the full lease timeout in vain, seconds during which leases are only tried."""

DEFAULT_IDLE_RELEASE_S = 2.0
"""Seconds a held GPU may sit unused before the executor gives it back (``gpu.idle_release_s``)."""


@dataclass(slots=True)
class DeviceTally:
    """What the runs on one GPU came to, for the run's performance baseline."""

    peak_bytes: int = 0
    soft_limit_hits: int = 0
    ooms: int = 0


@dataclass(slots=True)
class _Resident:
    """The model on a held GPU; closing ``stage`` moves it back and empties the cache."""

    name: str
    move: Callable[[str], None]
    stage: ExitStack


@dataclass(slots=True)
class _Hold:
    """A GPU leased across calls, and the one model resident on it."""

    lease: GpuLease
    device: str
    gpu: int
    since: float
    last_used: float
    resident: _Resident | None = None
    calls: int = 0
    capped: bool = False
    """Whether the hard cap is set on the device for this lease."""


class DeviceExecutor(AbstractContextManager["DeviceExecutor"]):
    """Runs workloads on a leased GPU when asked and possible, otherwise on the CPU.

    One executor serves every stage of a process, so each model's adapted batch size carries
    over from one call to the next, and the GPU it leased stays leased between calls, with one
    model resident on it at a time: a call for another model stages the resident one back and
    empties the cache first. Close it (or use it as a context manager) when the run ends to give
    the GPU back at once; it can run again afterwards, under a new lease.

    While it holds a GPU, another process that wants that GPU waits up to its lease timeout and
    then runs on the CPU; the idle release keeps such waits short once this one stops feeding it.

    Args:
        pool: Where GPU leases come from; ``None``: the CPU only.
        policy: VRAM caps and batch sizes.
        memory: Device memory operations (default: torch's CUDA allocator).
        telemetry: Receives the events (on the caller's current span).
        logger: Log lines (devices, sizes and counts, never text).
        idle_release_s: Seconds a held GPU may go unused before it is given back; ``0`` gives it
            back at the end of every call.
    """

    def __init__(
        self,
        pool: LeasePool | None = None,
        policy: BatchPolicy | None = None,
        memory: DeviceMemory | None = None,
        telemetry: Telemetry | None = None,
        logger: logging.Logger | None = None,
        *,
        idle_release_s: float = DEFAULT_IDLE_RELEASE_S,
    ) -> None:
        self.pool = pool
        self.policy = policy or BatchPolicy()
        self.memory = memory or CudaMemory()
        self.telemetry = telemetry or Telemetry()
        self.log = logger or log
        self.idle_release_s = idle_release_s
        self.batcher = AdaptiveBatcher(self.policy, self.memory, self.telemetry, self.log)
        self._told: set[tuple[str, str]] = set()
        self._busy_until = 0.0
        # Guards the hold: calls from several threads take turns on the GPU, and the idle
        # watcher waits on it for the hold to age.
        self._guard = threading.Condition()
        self._hold: _Hold | None = None
        self._watching = False
        self.usage: dict[str, DeviceTally] = {}
        """Per GPU this executor ran on: peak VRAM of a batch, soft-limit hits, OOMs."""

    @property
    def held_device(self) -> str | None:
        """The GPU held between calls (``cuda:0``), or ``None``."""
        hold = self._hold
        return hold.device if hold is not None else None

    def sibling(self) -> DeviceExecutor:
        """A new executor like this one (pool, policy, memory, telemetry, idle release): one
        more GPU of the same run, under a lease of its own."""
        return DeviceExecutor(
            self.pool,
            self.policy,
            self.memory,
            self.telemetry,
            self.log,
            idle_release_s=self.idle_release_s,
        )

    def hold_now(self, model: str, device_ids: Sequence[int] | None = None) -> str | None:
        """The GPU this executor holds, else one of ``device_ids`` leased now if it is free.

        Never waits: a busy GPU is simply not taken, and no fallback is reported (the caller
        has other GPUs, or runs :meth:`run`, which waits and falls back as usual).

        Args:
            model: The model about to run, for the lease record.
            device_ids: GPUs that may be leased (NVML indices); ``None``: any.

        Returns:
            The held GPU's torch device (``cuda:1``), or ``None``.
        """
        if self.pool is None:
            return None
        with self._guard:
            if self._hold is None:
                taken = self._take(model, device_ids, wait=False)
                if isinstance(taken, str):
                    self.log.debug("%s: no GPU free now (%s)", model, taken)
                    return None
                if self.idle_release_s > 0:
                    self._watch()
            return self._hold.device if self._hold is not None else None

    def close(self) -> None:
        """Stages the resident model back, empties the cache and releases the lease, if held."""
        with self._guard:
            self._end_hold()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(
        self,
        work: Workload[T, R],
        items: Sequence[T],
        *,
        use_gpu: bool = False,
        device_ids: Sequence[int] | None = None,
        catch: bool = True,
    ) -> BatchOutcome[R]:
        """One result per item, in order.

        Args:
            work: The model.
            items: Its inputs.
            use_gpu: Try to lease a GPU (ignored for a workload that cannot move).
            device_ids: GPUs that may be leased (NVML indices); ``None``: any.
            catch: On the CPU, record a failing batch and go on; otherwise raise its error.

        Returns:
            The results; a model that cannot load is reported in ``fatal``, never raised.
        """
        outcome: BatchOutcome[R] = BatchOutcome(results=[None] * len(items))
        if not items:
            return outcome
        order: Sequence[int] = range(len(items))
        if work.size is not None:
            size = work.size
            order = sorted(order, key=lambda i: size(items[i]), reverse=True)
        try:
            left: Sequence[int] = order
            if use_gpu and work.move is not None:
                with self._guard:
                    left = self._on_gpu(work, items, order, device_ids, outcome)
            if left:
                if work.move is not None:
                    self._evict(work)
                self.batcher.run_cpu(work, items, left, outcome, catch=catch)
        except ModelError as exc:
            outcome.fatal = exc
            reason = f"{type(exc).__name__}: {exc}"
            for i in outcome.pending(order):
                outcome.failures[i] = reason
        if outcome.gpu_batches:
            tally = self.usage.setdefault(outcome.device, DeviceTally())
            tally.peak_bytes = max(tally.peak_bytes, outcome.peak_bytes)
            tally.soft_limit_hits += outcome.soft_limit_hits
            tally.ooms += outcome.ooms
        return outcome

    def _on_gpu(
        self,
        work: Workload[T, R],
        items: Sequence[T],
        order: Sequence[int],
        device_ids: Sequence[int] | None,
        outcome: BatchOutcome[R],
    ) -> Sequence[int]:
        """Runs what it can on the held (or a newly leased) GPU; returns the positions left for
        the CPU. Called with the guard held."""
        assert work.move is not None
        hold = self._hold
        if hold is not None and device_ids is not None and hold.gpu not in device_ids:
            self._end_hold()  # this caller may not use the GPU held for another
            hold = None
        if hold is None:
            taken = self._take(work.name, device_ids)
            if isinstance(taken, str):
                return self._no_gpu(work, order, outcome, taken)
            hold = taken
        outcome.device = hold.device
        try:
            if not hold.capped:
                self.memory.set_hard_cap(hold.device, self.policy.hard_cap_bytes)
                hold.capped = True
            self._make_resident(hold, work)
            left = self.batcher.run_gpu(work, items, order, hold.device, outcome)
        except Exception as exc:
            if isinstance(exc, ModelError):
                self._end_hold()
                raise
            # Hydrating failed (out of memory, a driver error): what is left runs on the CPU.
            reason = failure_reason(exc, hold.device)
            left = outcome.pending(order)
            if not outcome.gpu_batches:
                outcome.device = "cpu"
            self.log.warning(
                "%s: GPU %s unusable (%s); using the CPU", work.name, hold.device, reason
            )
            self.telemetry.event(
                "fallback",
                {
                    "model": work.name,
                    "device": hold.device,
                    "from": hold.device,
                    "to": "cpu",
                    "reason": reason,
                    "chunks": len(left),
                },
            )
            self._end_hold()
            return left
        except BaseException:
            self._end_hold()  # interrupted: nothing is left holding the GPU
            raise
        hold.calls += 1
        hold.last_used = time.monotonic()
        # Work left for the CPU must not find the model on the GPU, and a GPU that could not
        # take all of a call is given back rather than held.
        if left or self.idle_release_s <= 0:
            self._end_hold()
        else:
            self._watch()
        return left

    def _take(
        self, model: str, device_ids: Sequence[int] | None, *, wait: bool = True
    ) -> _Hold | str:
        """A newly leased GPU, or why there is none; ``wait=False`` only tries."""
        if self.pool is None:
            return "no lease pool (gpu.enabled is off)"
        # After a wait that timed out, later calls only look for a free GPU for a while, so a
        # long sync beside a busy GPU does not wait the full timeout once per batch window.
        waits = wait and time.monotonic() >= self._busy_until
        lease = self.pool.lease(
            device_ids,
            model=model,
            timeout_s=None if waits else 0,
            vram_bytes=self.policy.hard_cap_bytes,
        )
        try:
            lease.acquire()
        except GpuLeaseUnavailable as exc:
            if lease.timed_out and waits:
                self._busy_until = time.monotonic() + BUSY_COOLDOWN_S
            return str(exc)
        now = time.monotonic()
        hold = _Hold(
            lease=lease,
            device=lease.device,
            gpu=lease.info.index if lease.info is not None else -1,
            since=now,
            last_used=now,
        )
        self._hold = hold
        self.telemetry.event(
            "gpu_lease_acquired",
            {
                "model": model,
                "device": hold.device,
                "gpu": hold.gpu,
                "waited_ms": round(lease.waited_s * 1000, 3),
            },
        )
        return hold

    @staticmethod
    def _is(resident: _Resident, work: Workload[T, R]) -> bool:
        # Workloads are built per call; the bound ``to`` of one model compares equal each time.
        return resident.name == work.name and resident.move == work.move

    def _make_resident(self, hold: _Hold, work: Workload[T, R]) -> None:
        """Hydrates ``work``'s model to the held GPU, staging another one back first."""
        assert work.move is not None
        resident = hold.resident
        if resident is not None and self._is(resident, work):
            return
        if resident is not None:
            hold.resident = None
            self.log.debug("%s: staged back for %s", resident.name, work.name)
            resident.stage.close()
        stage = ExitStack()
        stage.enter_context(staged(work.move, hold.device, self.memory))
        hold.resident = _Resident(work.name, work.move, stage)
        hold.lease.note_model(work.name)

    def _evict(self, work: Workload[T, R]) -> None:
        """Stages ``work``'s model back if it is resident: the CPU is about to run it."""
        with self._guard:
            hold = self._hold
            resident = hold.resident if hold is not None else None
            if hold is not None and resident is not None and self._is(resident, work):
                hold.resident = None
                resident.stage.close()

    def _end_hold(self) -> None:
        """Stages the resident model back and releases the lease. Called with the guard held."""
        hold, self._hold = self._hold, None
        if hold is None:
            return
        self._guard.notify_all()  # the idle watcher has nothing left to watch
        try:
            if hold.resident is not None:
                hold.resident.stage.close()
        finally:
            hold.lease.release()
            record = hold.lease.record
            model = hold.resident.name if hold.resident else record.model if record else ""
            self.telemetry.event(
                "gpu_lease_released",
                {
                    "model": model,
                    "device": hold.device,
                    "gpu": hold.gpu,
                    "held_ms": round((time.monotonic() - hold.since) * 1000, 3),
                    "calls": hold.calls,
                },
            )

    def _watch(self) -> None:
        """Starts the idle watcher unless it runs. Called with the guard held."""
        if self._watching:
            return
        self._watching = True
        threading.Thread(
            target=self._release_when_idle, name="gpu-idle-release", daemon=True
        ).start()

    def _release_when_idle(self) -> None:
        with self._guard:
            try:
                while self._hold is not None:
                    idle_s = time.monotonic() - self._hold.last_used
                    if idle_s >= self.idle_release_s:
                        self.log.info("GPU %s idle for %.1fs: released", self._hold.device, idle_s)
                        self._end_hold()
                        break
                    self._guard.wait(self.idle_release_s - idle_s)
            finally:
                self._watching = False

    def _no_gpu(
        self, work: Workload[T, R], order: Sequence[int], outcome: BatchOutcome[R], why: str
    ) -> Sequence[int]:
        outcome.gpu_error = why
        # Said loudly once per model and reason; a long sync would otherwise repeat it per window.
        level = logging.INFO if (work.name, why) in self._told else logging.WARNING
        self._told.add((work.name, why))
        self.log.log(level, "%s: no GPU (%s); using the CPU", work.name, why)
        self.telemetry.event(
            "fallback",
            {
                "model": work.name,
                "from": "gpu",
                "to": "cpu",
                "reason": "lease_unavailable",
                "chunks": len(order),
            },
        )
        return order

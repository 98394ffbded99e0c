"""Runs one model over a list of items: on a leased GPU with adaptive batches, else the CPU.

The path of one call::

    lease a GPU (wait up to the timeout)  ── none ──────────────────────────────┐
      set the hard cap, hydrate the model to it                                 │
      adaptive batches (halve on OOM / soft limit, grow back)                   │
      stage the model back to the CPU, empty the cache, release the lease       │
    the CPU: batches left over (OOM at the minimum size, other errors)  ◄──────┘
    what still fails: ``outcome.failures`` (the sparse stage's metadata fallback takes it)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
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
from connector.gpu._lease import LeasePool
from connector.gpu._staging import staged
from connector.telemetry import Telemetry

__all__ = ["BUSY_COOLDOWN_S", "DeviceExecutor"]

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

BUSY_COOLDOWN_S = 30.0
"""After waiting the full lease timeout in vain, seconds during which leases are only tried."""


@dataclass(slots=True)
class DeviceTally:
    """What the runs on one GPU came to, for the run's performance baseline."""

    peak_bytes: int = 0
    soft_limit_hits: int = 0
    ooms: int = 0


class DeviceExecutor:
    """Runs workloads on a leased GPU when asked and possible, otherwise on the CPU.

    One executor serves every stage of a process, so each model's adapted batch size carries
    over from one call to the next.

    Args:
        pool: Where GPU leases come from; ``None``: the CPU only.
        policy: VRAM caps and batch sizes.
        memory: Device memory operations (default: torch's CUDA allocator).
        telemetry: Receives the events (on the caller's current span).
        logger: Log lines (devices, sizes and counts, never text).
    """

    def __init__(
        self,
        pool: LeasePool | None = None,
        policy: BatchPolicy | None = None,
        memory: DeviceMemory | None = None,
        telemetry: Telemetry | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.pool = pool
        self.policy = policy or BatchPolicy()
        self.memory = memory or CudaMemory()
        self.telemetry = telemetry or Telemetry()
        self.log = logger or log
        self.batcher = AdaptiveBatcher(self.policy, self.memory, self.telemetry, self.log)
        self._told: set[tuple[str, str]] = set()
        self._busy_until = 0.0
        self.usage: dict[str, DeviceTally] = {}
        """Per GPU this executor ran on: peak VRAM of a batch, soft-limit hits, OOMs."""

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
                left = self._on_gpu(work, items, order, device_ids, outcome)
            if left:
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
        """Runs what it can under a lease; returns the positions left for the CPU."""
        assert work.move is not None
        if self.pool is None:
            return self._no_gpu(work, order, outcome, "no lease pool (gpu.enabled is off)")
        # After a wait that timed out, later calls only look for a free GPU for a while, so a
        # long sync beside a busy GPU does not wait the full timeout once per batch window.
        waited_out = time.monotonic() < self._busy_until
        lease = self.pool.lease(
            device_ids,
            model=work.name,
            timeout_s=0 if waited_out else None,
            vram_bytes=self.policy.hard_cap_bytes,
        )
        try:
            lease.acquire()
        except GpuLeaseUnavailable as exc:
            if lease.timed_out and not waited_out:
                self._busy_until = time.monotonic() + BUSY_COOLDOWN_S
            return self._no_gpu(work, order, outcome, str(exc))
        device = lease.device
        attributes = {"model": work.name, "device": device}
        gpu = lease.info.index if lease.info is not None else -1
        held_from = time.monotonic()
        self.telemetry.event(
            "gpu_lease_acquired",
            attributes | {"gpu": gpu, "waited_ms": round(lease.waited_s * 1000, 3)},
        )
        outcome.device = device
        try:
            self.memory.set_hard_cap(device, self.policy.hard_cap_bytes)
            with staged(work.move, device, self.memory):
                return self.batcher.run_gpu(work, items, order, device, outcome)
        except ModelError:
            raise
        except Exception as exc:
            # Hydrating failed (out of memory, a driver error): what is left runs on the CPU.
            reason = failure_reason(exc, device)
            left = outcome.pending(order)
            if not outcome.gpu_batches:
                outcome.device = "cpu"
            self.log.warning("%s: GPU %s unusable (%s); using the CPU", work.name, device, reason)
            self.telemetry.event(
                "fallback",
                attributes | {"from": device, "to": "cpu", "reason": reason, "chunks": len(left)},
            )
            return left
        finally:
            lease.release()
            self.telemetry.event(
                "gpu_lease_released",
                attributes
                | {"gpu": gpu, "held_ms": round((time.monotonic() - held_from) * 1000, 3)},
            )

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

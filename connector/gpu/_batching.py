"""Adaptive batch sizes on a GPU: shrink under memory pressure, grow back when it is gone.

Per batch on the GPU:

* ``torch.cuda.OutOfMemoryError``: free the cache, halve, and retry the same items; a batch that
  fails at the minimum size is left for the CPU.
* peak memory over the soft limit after a batch: the next batch is half as large.
* any other error: that batch is left for the CPU.
* ``grow_after`` clean batches in a row: the size doubles, up to the model's recommended size.

The size reached is remembered per model, so the next call starts where this one ended.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from connector.errors import ConnectorError, ModelError
from connector.gpu._cuda import DeviceMemory, is_out_of_memory
from connector.telemetry import Telemetry

__all__ = ["GIB", "AdaptiveBatcher", "BatchOutcome", "BatchPolicy", "Workload", "failure_reason"]

T = TypeVar("T")
R = TypeVar("R")

GIB = 1 << 30
"""Bytes in the GB of the settings (``vram_hard_cap_gb`` and ``vram_soft_limit_gb``)."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """How batches adapt on a GPU.

    Attributes:
        hard_cap_bytes: The process may not allocate more on the device (the allocator enforces
            it: past it, out-of-memory).
        soft_limit_bytes: Peak memory of a batch above this halves the next batch.
        min_batch: Smallest batch tried on the GPU; failing at this size moves it to the CPU.
        grow_after: Clean batches in a row before the size doubles again.
    """

    hard_cap_bytes: int = 12 * GIB
    soft_limit_bytes: int = 10 * GIB
    min_batch: int = 4
    grow_after: int = 4

    def __post_init__(self) -> None:
        if self.min_batch < 1 or self.grow_after < 1:
            raise ValueError("min_batch and grow_after must be >= 1")
        if not 0 < self.soft_limit_bytes <= self.hard_cap_bytes:
            raise ValueError("the soft limit must be positive and at most the hard cap")


@dataclass(slots=True)
class Workload(Generic[T, R]):
    """A model as the batch runner drives it.

    Attributes:
        name: The model's name (telemetry, lease records, remembered batch size).
        encode: One result per item, in order; called with one batch.
        max_batch: The model's recommended batch size: where batches start and grow back to.
        move: Moves the model to a torch device; ``None`` when it only runs on the CPU.
        size: Relative cost of an item (text length); items run longest first so a batch holds
            items of similar size and memory trouble shows on the first batch, not the last.
    """

    name: str
    encode: Callable[[list[T]], list[R]]
    max_batch: int
    move: Callable[[str], None] | None = None
    size: Callable[[T], int] | None = None


@dataclass(slots=True)
class BatchOutcome(Generic[R]):
    """What one run of a workload produced.

    Attributes:
        results: One result per item, ``None`` where it failed.
        failures: Position → why it failed (no text: error types, and our own messages).
        device: Where the model ran: the leased GPU, or ``cpu``.
        fatal: A model error that stopped the run (the model cannot load).
        gpu_batches: Batches that ran on the GPU.
        cpu_batches: Batches that ran on the CPU.
        ooms: Out-of-memory errors met on the GPU.
        soft_limit_hits: Batches whose peak passed the soft limit.
        peak_bytes: Highest peak of one batch on the GPU.
        gpu_error: Why the GPU was not used at all, if it was asked for and not used.
    """

    results: list[R | None]
    failures: dict[int, str] = field(default_factory=dict)
    device: str = "cpu"
    fatal: ModelError | None = None
    gpu_batches: int = 0
    cpu_batches: int = 0
    ooms: int = 0
    soft_limit_hits: int = 0
    peak_bytes: int = 0
    gpu_error: str | None = None

    def pending(self, positions: Sequence[int]) -> list[int]:
        """Of ``positions``, those with neither a result nor a failure yet."""
        return [i for i in positions if self.results[i] is None and i not in self.failures]


def failure_reason(exc: BaseException, device: str) -> str:
    """Why a batch failed, without text from the batch.

    Our own errors' messages are known to hold none; a foreign message may quote its input, so
    only its type is kept.
    """
    if isinstance(exc, ConnectorError):
        return f"{type(exc).__name__} on {device}: {exc}"
    return f"{type(exc).__name__} on {device}"


class AdaptiveBatcher:
    """Runs workloads in batches, adapting their size on a GPU.

    Args:
        policy: Limits and sizes.
        memory: The device memory (caps, peaks, cache).
        telemetry: Receives one event per decision.
        logger: Log lines (sizes and counts, never text).
    """

    def __init__(
        self,
        policy: BatchPolicy,
        memory: DeviceMemory,
        telemetry: Telemetry | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.policy = policy
        self.memory = memory
        self.telemetry = telemetry or Telemetry()
        self.log = logger or log
        self._sizes: dict[str, int] = {}
        self._clean: dict[str, int] = {}

    def batch_size(self, work: Workload[Any, Any]) -> int:
        """The size the next GPU batch of ``work`` will have."""
        ceiling = max(1, work.max_batch)
        return min(ceiling, self._sizes.get(work.name, ceiling))

    def sizes(self) -> dict[str, int]:
        """The batch size each model has adapted to, by model name (models not yet adapted
        start at their recommended size)."""
        return dict(self._sizes)

    def _floor(self, work: Workload[Any, Any]) -> int:
        return min(self.policy.min_batch, max(1, work.max_batch))

    def run_gpu(
        self,
        work: Workload[T, R],
        items: Sequence[T],
        order: Sequence[int],
        device: str,
        outcome: BatchOutcome[R],
    ) -> list[int]:
        """Runs ``order``'s items on ``device`` (the model is there already).

        Returns:
            Positions left for the CPU: batches failing at the minimum size or with an error
            other than out-of-memory.

        Raises:
            ModelError: The model cannot load; nothing later would do better.
        """
        for_cpu: list[int] = []
        attributes = {"model": work.name, "device": device}
        pos = 0
        while pos < len(order):
            size = self.batch_size(work)
            batch = list(order[pos : pos + size])
            self.memory.reset_peak(device)
            error: str | None = None
            oom = False
            try:
                results = work.encode([items[i] for i in batch])
            except ModelError:
                raise
            except Exception as exc:
                # Only the facts leave this block: the traceback holds the batch's tensors.
                oom = is_out_of_memory(exc)
                error = None if oom else failure_reason(exc, device)
            if oom:
                outcome.ooms += 1
                self.telemetry.event("gpu_oom", attributes | {"batch_size": len(batch)})
                gc.collect()
                self.memory.free(device)
                if len(batch) > self._floor(work):
                    self._resize(work, max(self._floor(work), len(batch) // 2), "oom", device)
                    continue  # the same items again, fewer at a time
                error = "out of memory at the minimum batch size"
            if error is not None:
                self.log.warning(
                    "%s on %s: a batch of %d moves to the CPU (%s)",
                    work.name,
                    device,
                    len(batch),
                    error,
                )
                self.telemetry.event(
                    "fallback",
                    attributes
                    | {"from": device, "to": "cpu", "reason": error, "chunks": len(batch)},
                )
                for_cpu.extend(batch)
                self._clean[work.name] = 0
                pos += len(batch)
                continue
            for i, result in zip(batch, results, strict=True):
                outcome.results[i] = result
            outcome.gpu_batches += 1
            self._after_batch(work, len(batch), device, outcome)
            pos += len(batch)
        return for_cpu

    def _after_batch(
        self, work: Workload[Any, Any], done: int, device: str, outcome: BatchOutcome[Any]
    ) -> None:
        peak = self.memory.peak_bytes(device)
        outcome.peak_bytes = max(outcome.peak_bytes, peak)
        if peak > self.policy.soft_limit_bytes:
            outcome.soft_limit_hits += 1
            self.telemetry.event(
                "gpu_soft_limit_exceeded",
                {
                    "model": work.name,
                    "device": device,
                    "batch_size": done,
                    "peak_bytes": peak,
                    "soft_limit_bytes": self.policy.soft_limit_bytes,
                },
            )
            self._clean[work.name] = 0
            smaller = max(self._floor(work), min(self.batch_size(work), done) // 2)
            if smaller < self.batch_size(work):
                self._resize(work, smaller, "soft_limit", device)
            return
        clean = self._clean.get(work.name, 0) + 1
        size = self.batch_size(work)
        if clean >= self.policy.grow_after and size < work.max_batch:
            self._resize(work, min(work.max_batch, size * 2), "grow", device)
            clean = 0
        self._clean[work.name] = clean

    def _resize(self, work: Workload[Any, Any], new: int, reason: str, device: str) -> None:
        old = self.batch_size(work)
        self._sizes[work.name] = new
        self._clean[work.name] = 0
        self.log.info("%s on %s: batch size %d -> %d (%s)", work.name, device, old, new, reason)
        self.telemetry.event(
            "batch_size_changed",
            {"model": work.name, "device": device, "old": old, "new": new, "reason": reason},
        )

    def run_cpu(
        self,
        work: Workload[T, R],
        items: Sequence[T],
        order: Sequence[int],
        outcome: BatchOutcome[R],
        *,
        catch: bool,
    ) -> None:
        """Runs ``order``'s items on the CPU in batches of the model's recommended size.

        Args:
            catch: Record a failing batch in ``outcome.failures`` and go on; otherwise raise.

        Raises:
            ModelError: The model cannot load.
        """
        size = max(1, work.max_batch)
        for start in range(0, len(order), size):
            batch = list(order[start : start + size])
            try:
                results = work.encode([items[i] for i in batch])
            except ModelError:
                raise
            except Exception as exc:
                if not catch:
                    raise
                reason = failure_reason(exc, "cpu")
                for i in batch:
                    outcome.failures[i] = reason
                continue
            for i, result in zip(batch, results, strict=True):
                outcome.results[i] = result
            outcome.cpu_batches += 1

"""The dense stage of a sync: each model of the ensemble over a window's texts.

It runs through the same :class:`~connector.gpu.DeviceExecutor` as the sparse stage: on a leased
GPU with adaptive batches when the GPU is enabled, else on the CPU. The executor keeps the lease
and the model on the GPU from one window to the next; whoever owns it closes it at the run's end.

With several GPUs allowed, a model that can copy itself (``replica()``) runs on all of them at
once: each GPU gets an executor of its own (its own lease, hard cap and batch sizes) and a copy
of the model, and each window's texts are split into one part per GPU held or free at that
moment, encoded side by side in threads and joined in order. A GPU another process holds is left
alone until it is free; with none free, the shared executor waits and falls back as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from connector.errors import GpuLeaseUnavailable
from connector.gpu._batching import BatchOutcome, Workload
from connector.gpu._executor import DeviceExecutor
from connector.telemetry import Telemetry, current_context, in_context

if TYPE_CHECKING:
    from connector.dense import DenseEncoder

__all__ = ["DEFAULT_DENSE_BATCH", "DenseStage"]

DEFAULT_DENSE_BATCH = 32
"""Batch size of a dense encoder that does not state its own."""


@dataclass(frozen=True, slots=True)
class _Part:
    """A slice of a call's texts, and where it runs."""

    executor: DeviceExecutor
    encoder: DenseEncoder
    device_ids: tuple[int, ...] | None
    start: int
    stop: int


class DenseStage(AbstractContextManager["DenseStage"]):
    """Encodes texts with one dense model at a time, on every GPU it can lease.

    Close it (or use it as a context manager) when the run ends: the executors it added for
    further GPUs give their leases back (``executor`` is its owner's to close).

    Args:
        executor: Where models run (default: the CPU only); with several GPUs, the first of
            them, and the model of the sparse stage's GPU.
        use_gpu: Run on GPUs when free (leased on first use and held between calls).
        device_ids: GPUs that may be leased; ``None``: any.
        telemetry: A ``dense_model`` span per call, with the executors' events on it.
    """

    def __init__(
        self,
        executor: DeviceExecutor | None = None,
        *,
        use_gpu: bool = False,
        device_ids: Sequence[int] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.telemetry = telemetry or Telemetry()
        self.executor = executor or DeviceExecutor(telemetry=self.telemetry)
        self.use_gpu = use_gpu
        self.device_ids = tuple(device_ids) if device_ids is not None else None
        self._gpus: list[tuple[int, str]] | None = None  # (NVML index, torch device), probed once
        self._more: dict[int, DeviceExecutor] = {}  # NVML index -> the executor of that GPU
        # (id of the model, NVML index) -> (the model, its copy for that GPU's executor)
        self._replicas: dict[tuple[int, int], tuple[DenseEncoder, DenseEncoder]] = {}
        self._threads: ThreadPoolExecutor | None = None

    @property
    def executors(self) -> list[DeviceExecutor]:
        """Every executor the stage runs on: ``executor``, then one per further GPU it used."""
        return [self.executor, *self._more.values()]

    def close(self) -> None:
        """Gives back the GPUs of the executors it added and stops its threads."""
        threads, self._threads = self._threads, None
        try:
            if threads is not None:
                threads.shutdown(wait=True)
        finally:
            for executor in self._more.values():
                executor.close()
            self._gpus = None  # probed again by the next run

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def encode(self, encoder: DenseEncoder, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order.

        Raises:
            ModelError: The model cannot load.
            Exception: Whatever the model raised on the CPU (a dense vector has no fallback).
        """
        # Under the sync's per-batch ``dense`` span: one per model, with the executors' events.
        with self.telemetry.span("dense_model", {"model": encoder.name}) as span:
            parts = self._parts(encoder, len(texts))
            outcomes = self._run(parts, texts)
            devices = dict.fromkeys(o.device for o in outcomes)
            span.set_attributes(
                {
                    "device": ",".join(devices),
                    "chunk_count": len(texts),
                    "gpu_batches": sum(o.gpu_batches for o in outcomes),
                    "cpu_batches": sum(o.cpu_batches for o in outcomes),
                    "oom_count": sum(o.ooms for o in outcomes),
                    "peak_vram_bytes": max(o.peak_bytes for o in outcomes),
                }
            )
        for outcome in outcomes:
            if outcome.fatal is not None:
                raise outcome.fatal
        vectors = [v for outcome in outcomes for v in outcome.results if v is not None]
        if len(vectors) != len(texts):  # catch=False: a failure raises before this
            raise RuntimeError("dense stage lost vectors")
        return vectors

    def _parts(self, encoder: DenseEncoder, count: int) -> list[_Part]:
        """One part per GPU held or free now (at most one per text); one part on ``executor``
        (which waits for a GPU and falls back as usual) when that is fewer than two."""
        single = [_Part(self.executor, encoder, self.device_ids, 0, count)]
        gpus = self._spread_over(encoder) if count > 1 else []
        if not gpus:
            return single
        index_of = {device: index for index, device in gpus}
        more_hold = {e.held_device for e in self._more.values()}
        # The shared executor first: it keeps its GPU, else takes one the others do not hold.
        free = [index for index, device in gpus if device not in more_hold]
        primary = self.executor.hold_now(encoder.name, free) if free else None
        placed: list[tuple[DeviceExecutor, DenseEncoder, int]] = []
        if primary in index_of:
            placed.append((self.executor, encoder, index_of[primary]))
        for index, device in gpus:
            if len(placed) >= count:
                break
            if device == primary:
                continue
            executor = self._more.get(index)
            if executor is None:
                executor = self._more[index] = self.executor.sibling()
            if executor.hold_now(encoder.name, [index]) is not None:
                placed.append((executor, self._replica(encoder, index), index))
        if not placed or (len(placed) == 1 and placed[0][0] is self.executor):
            return single  # as with one GPU: the shared executor waits and falls back
        share, extra = divmod(count, len(placed))
        parts = []
        start = 0
        for n, (executor, model, index) in enumerate(placed):
            stop = start + share + (1 if n < extra else 0)
            parts.append(_Part(executor, model, (index,), start, stop))
            start = stop
        return parts

    def _spread_over(self, encoder: DenseEncoder) -> list[tuple[int, str]]:
        """The GPUs ``encoder`` may spread over, most free memory first; none when it cannot
        (one GPU, the GPU off, a model that cannot move or copy itself)."""
        pool = self.executor.pool
        if not self.use_gpu or pool is None:
            return []
        if not callable(getattr(encoder, "to", None)):
            return []
        if not callable(getattr(encoder, "replica", None)):
            return []
        if self._gpus is None:
            try:
                found = pool.candidates(self.device_ids)
            except GpuLeaseUnavailable:
                found = []  # the executor says why when it tries
            self._gpus = [(info.index, device) for info, device in found]
        return self._gpus if len(self._gpus) > 1 else []

    def _replica(self, encoder: DenseEncoder, index: int) -> DenseEncoder:
        """The copy of ``encoder`` that GPU ``index``'s executor runs (made once)."""
        key = (id(encoder), index)
        kept = self._replicas.get(key)
        if kept is None:
            kept = self._replicas[key] = (encoder, encoder.replica())  # type: ignore[attr-defined]
        return kept[1]

    def _run(self, parts: list[_Part], texts: Sequence[str]) -> list[BatchOutcome[list[float]]]:
        if len(parts) == 1:
            return [self._run_part(parts[0], texts)]
        if self._threads is None:
            workers = max(len(self._gpus or ()), len(parts))
            self._threads = ThreadPoolExecutor(workers, thread_name_prefix="dense-gpu")
        context = current_context()  # the executors' events go on this call's span

        def run(part: _Part) -> BatchOutcome[list[float]]:
            with in_context(context):
                return self._run_part(part, texts[part.start : part.stop])

        futures: list[Future[BatchOutcome[list[float]]]] = [
            self._threads.submit(run, part) for part in parts
        ]
        wait(futures)  # every part ends before a failure is raised: no GPU is left mid-batch
        return [future.result() for future in futures]

    def _run_part(self, part: _Part, texts: Sequence[str]) -> BatchOutcome[list[float]]:
        encoder = part.encoder
        move = getattr(encoder, "to", None)
        work: Workload[str, list[float]] = Workload(
            name=encoder.name,
            encode=encoder.encode,
            max_batch=int(getattr(encoder, "batch_size", DEFAULT_DENSE_BATCH)),
            move=move if callable(move) else None,
            size=len,
        )
        return part.executor.run(
            work, texts, use_gpu=self.use_gpu, device_ids=part.device_ids, catch=False
        )

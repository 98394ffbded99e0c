"""The dense stage of a sync: each model of the ensemble over a window's texts.

It runs through the same :class:`~connector.gpu.DeviceExecutor` as the sparse stage: on a leased
GPU with adaptive batches when the GPU is enabled, else on the CPU. The executor keeps the lease
and the model on the GPU from one window to the next; whoever owns it closes it at the run's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from connector.gpu._batching import Workload
from connector.gpu._executor import DeviceExecutor
from connector.telemetry import Telemetry

if TYPE_CHECKING:
    from connector.dense import DenseEncoder

__all__ = ["DEFAULT_DENSE_BATCH", "DenseStage"]

DEFAULT_DENSE_BATCH = 32
"""Batch size of a dense encoder that does not state its own."""


class DenseStage:
    """Encodes texts with one dense model at a time.

    Args:
        executor: Where models run (default: the CPU only).
        use_gpu: Run on a GPU when one is free (leased by the executor on first use and held
            between calls).
        device_ids: GPUs that may be leased; ``None``: any.
        telemetry: A ``dense_model`` span per call, with the executor's events on it.
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

    def encode(self, encoder: DenseEncoder, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order.

        Raises:
            ModelError: The model cannot load.
            Exception: Whatever the model raised on the CPU (a dense vector has no fallback).
        """
        move = getattr(encoder, "to", None)
        work: Workload[str, list[float]] = Workload(
            name=encoder.name,
            encode=encoder.encode,
            max_batch=int(getattr(encoder, "batch_size", DEFAULT_DENSE_BATCH)),
            move=move if callable(move) else None,
            size=len,
        )
        # Under the sync's per-batch ``dense`` span: one per model, with the executor's events.
        with self.telemetry.span("dense_model", {"model": encoder.name}) as span:
            outcome = self.executor.run(
                work, texts, use_gpu=self.use_gpu, device_ids=self.device_ids, catch=False
            )
            span.set_attributes(
                {
                    "device": outcome.device,
                    "chunk_count": len(texts),
                    "gpu_batches": outcome.gpu_batches,
                    "cpu_batches": outcome.cpu_batches,
                    "oom_count": outcome.ooms,
                    "peak_vram_bytes": outcome.peak_bytes,
                }
            )
        if outcome.fatal is not None:
            raise outcome.fatal
        vectors = [vector for vector in outcome.results if vector is not None]
        if len(vectors) != len(texts):  # catch=False: a failure raises before this
            raise RuntimeError("dense stage lost vectors")
        return vectors

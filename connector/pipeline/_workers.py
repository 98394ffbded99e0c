"""The sparse model on worker processes, so that CPU-bound sparse work grows with cores.

A pool of ``workers`` long-lived processes is started once per run; each rebuilds the sparse
registry from its options (and any encoders supplied to it, once) and keeps its encoders for the
run. Per window, the chunks' texts go out in ``workers`` parts and their vectors come back as
plain data; the main process merges them in order and does everything else as in-process: the
``sparse_inference`` span, metrics, fallbacks to metadata, the record. A model that runs on a
leased GPU stays in the main process (the lease is per process).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from connector._processes import process_context
from connector.errors import ConnectorError, ModelError
from connector.gpu._batching import BatchOutcome, Workload
from connector.gpu._executor import DeviceExecutor
from connector.sparse._worker import encode_part, ready, start_worker
from connector.sparse.generator import SparseVectorGenerator

if TYPE_CHECKING:
    from connector.pipeline.syncer import SparseTarget

__all__ = [
    "AUTO_MAX_WORKERS",
    "AUTO_MIN_BYTES",
    "auto_workers",
    "runs_in_workers",
    "sparse_workers",
]

T = TypeVar("T")
R = TypeVar("R")


AUTO_MIN_BYTES = 8 << 20
"""Smallest source (about 10,000 short chunks) for which a sync starts worker processes by
default: each takes a moment to start, which a smaller sync does not win back."""
AUTO_MAX_WORKERS = 16
"""Most worker processes a sync starts by default: beyond that, the one writer of the store
bounds a CPU-bound sync anyway."""


def auto_workers(total_bytes: int | None) -> int:
    """Worker processes for a source of ``total_bytes`` (``None``: not known before it is read):
    one per core this process may run on but one, up to :data:`AUTO_MAX_WORKERS`; 1 (none
    started) for a source under :data:`AUTO_MIN_BYTES`.

    The sync's own process (reading, planning, feeding the GPU, handing work over) keeps a core
    busy by itself: on two cores, a worker beside it takes as much as it gives.
    """
    if total_bytes is not None and total_bytes < AUTO_MIN_BYTES:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        cores = os.cpu_count() or 1
    return max(1, min(cores - 1, AUTO_MAX_WORKERS))


def runs_in_workers(target: SparseTarget) -> bool:
    """Whether ``target``'s model may run on worker processes: not when it runs on a GPU."""
    try:
        encoder = target.generator.registry.encoder(target.model_name)
    except ConnectorError:
        return False  # generate() falls back to metadata at once: nothing to spread
    return not (target.use_gpu and callable(getattr(encoder, "to", None)))


@contextmanager
def sparse_workers(target: SparseTarget, workers: int) -> Iterator[SparseTarget]:
    """``target`` with its model run by a pool of ``workers`` processes, shut down on exit.

    The pool is shut down however the block ends (a failure, Ctrl-C, SIGTERM unwinding it),
    after the parts in flight finish: no worker outlives the run.
    """
    context = process_context()
    registry = target.generator.registry
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=start_worker,
        initargs=(registry.options, registry.supplied),
    )
    try:
        # Each worker starts (imports, builds its model) while the first window is read.
        for _ in range(workers):
            pool.submit(ready)
        generator = target.generator
        pooled = SparseVectorGenerator(
            registry,
            _PooledExecutor(generator.executor, pool, workers),
            telemetry=generator.telemetry,
            logger=generator.log,
        )
        yield replace(target, generator=pooled)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _PooledExecutor(DeviceExecutor):
    """Runs a CPU workload's items in parts on the pool; anything else on ``inner``."""

    def __init__(self, inner: DeviceExecutor, pool: ProcessPoolExecutor, parts: int) -> None:
        super().__init__(
            policy=inner.policy, memory=inner.memory, telemetry=inner.telemetry, logger=inner.log
        )
        self.inner = inner
        self.processes = pool
        self.parts = parts

    def run(
        self,
        work: Workload[T, R],
        items: Sequence[T],
        *,
        use_gpu: bool = False,
        device_ids: Sequence[int] | None = None,
        catch: bool = True,
    ) -> BatchOutcome[R]:
        parts = min(self.parts, len(items))
        if (use_gpu and work.move is not None) or not catch or not parts:
            return self.inner.run(work, items, use_gpu=use_gpu, device_ids=device_ids, catch=catch)
        bounds = [len(items) * n // parts for n in range(parts + 1)]
        spans = list(zip(bounds, bounds[1:], strict=False))
        futures: list[Future[BatchOutcome[Any]] | Exception] = []
        for a, b in spans:
            try:
                futures.append(
                    self.processes.submit(encode_part, work.name, work.max_batch, items[a:b])
                )
            except Exception as exc:  # the pool broke: a worker died
                futures.append(exc)
        outcome: BatchOutcome[R] = BatchOutcome(results=[None] * len(items))
        for (start, end), future in zip(spans, futures, strict=True):
            try:
                if isinstance(future, Exception):
                    raise future
                part: BatchOutcome[Any] = future.result()
            except Exception as exc:  # a worker died, or its part could not travel
                part = BatchOutcome(results=[None] * (end - start))
                part.fatal = ModelError(f"sparse worker failed: {type(exc).__name__}: {exc}")
                part.failures = dict.fromkeys(range(end - start), str(part.fatal))
            outcome.results[start:end] = part.results
            outcome.failures.update({start + i: why for i, why in part.failures.items()})
            outcome.fatal = outcome.fatal or part.fatal
            outcome.cpu_batches += part.cpu_batches
        return outcome

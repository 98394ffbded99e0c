"""The worker side of a sync's sparse pool (see :mod:`connector.pipeline._workers`).

Kept apart from the pipeline so that a worker imports the sparse models and the CPU executor
only, not the store and the pipeline: a worker starts in a tenth of the time.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from typing import Any

from connector._processes import exit_with_parent
from connector.errors import ConnectorError, ModelError
from connector.gpu._batching import BatchOutcome, Workload
from connector.gpu._executor import DeviceExecutor
from connector.sparse.generator import ModelRegistry
from connector.sparse.vector import SparseVec

__all__ = ["encode_part", "ready", "start_worker"]

# One registry and one CPU executor per worker process, built by its initializer.
_registry: ModelRegistry | None = None
_executor: DeviceExecutor | None = None


def start_worker(options: dict[str, dict[str, Any]], supplied: dict[str, Any]) -> None:
    """A worker's initializer: its own registry and CPU executor for the whole run."""
    global _registry, _executor
    # Ctrl-C reaches the whole process group; the main process stops the run and the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    _registry = ModelRegistry(options, supplied)
    _executor = DeviceExecutor()


def ready() -> None:
    """Nothing: submitted once per worker so that each starts before the first window."""


def encode_part(name: str, max_batch: int, texts: Sequence[Any]) -> BatchOutcome[SparseVec]:
    """One part of a window: the model's document vectors of ``texts``, as plain data."""
    assert _registry is not None and _executor is not None, "worker not initialized"
    outcome: BatchOutcome[SparseVec]
    try:
        encoder = _registry.encoder(name)
    except ConnectorError as exc:
        outcome = BatchOutcome(results=[None] * len(texts), fatal=ModelError(str(exc)))
        outcome.failures = dict.fromkeys(range(len(texts)), f"{type(exc).__name__}: {exc}")
        return outcome
    work: Workload[Any, SparseVec] = Workload(
        name=name, encode=encoder.encode_documents, max_batch=max_batch
    )
    outcome = _executor.run(work, texts)
    # The terms stay here: a sync stores none of them, and they are the larger part to pickle.
    outcome.results = [
        None if vec is None else SparseVec(vec.indices, vec.values, [], vec.total_terms)
        for vec in outcome.results
    ]
    if outcome.fatal is not None:
        # Its own exception class may not travel back; its message does.
        outcome.fatal = ModelError(str(outcome.fatal))
    return outcome

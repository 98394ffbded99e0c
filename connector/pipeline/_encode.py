"""The encoding stages of a sync: the dense ensemble and the sparse model over a window.

Each fills in the window's vectors and what the run's record should say about them; the
consumer, in window order, tells the record, so the record has one writer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from connector.pipeline._plan import Window
from connector.pipeline.stages import DenseStage
from connector.store import SparseValues
from connector.telemetry import Telemetry

if TYPE_CHECKING:
    from connector.dense import DenseEncoder
    from connector.pipeline.syncer import SparseTarget

__all__ = ["DenseEncode", "SparseEncode"]


class DenseEncode:
    """Each dense model over the window positions that need it, under one ``dense`` span."""

    def __init__(
        self,
        dense: Sequence[DenseEncoder],
        stage: DenseStage,
        telemetry: Telemetry,
        device: str,
    ) -> None:
        self.dense = list(dense)
        self.stage = stage
        self.telemetry = telemetry
        self.device = device

    def __call__(self, window: Window) -> Window:
        needs = window.needs
        if not any(needs[encoder.name] for encoder in self.dense):
            return window
        started = time.perf_counter()
        attributes = {
            "models": ",".join(e.name for e in self.dense if needs[e.name]),
            "device": self.device,
            "chunk_count": len({i for e in self.dense for i in needs[e.name]}),
        }
        with self.telemetry.span("dense", attributes) as span:
            for encoder in self.dense:
                indices = needs[encoder.name]
                if indices:
                    texts = [window.items[i][0].text for i in indices]
                    encoded = self.stage.encode(encoder, texts)
                    window.vectors[encoder.name] = dict(zip(indices, encoded, strict=True))
            latency = (time.perf_counter() - started) * 1000
            span.set_attribute("latency_ms", round(latency, 3))
        window.dense_ms = latency
        self.telemetry.record_stage("dense", latency)
        return window


class SparseEncode:
    """The sparse model over the window positions that need it (``sparse_inference`` span)."""

    def __init__(self, target: SparseTarget, telemetry: Telemetry) -> None:
        self.target = target
        self.telemetry = telemetry

    def __call__(self, window: Window) -> Window:
        target = self.target
        indices = window.needs[target.vector_name]
        if not indices:
            return window
        result = target.generator.generate(
            [window.items[i][0] for i in indices],
            target.model_name,
            target.use_gpu,
            target.device_ids,
        )
        vectors: dict[int, Any] = {}
        for position, (i, vec) in enumerate(zip(indices, result.vectors, strict=True)):
            if position in result.fallback_reasons:
                window.fallbacks[i] = result.fallback_reasons[position]
            if vec and vec["indices"]:
                vectors[i] = SparseValues(vec["indices"], vec["values"])
            else:
                # Qdrant has nothing to match on; the signature still records it as done.
                vectors[i] = None
                window.sparse_empty += 1
        window.vectors[target.vector_name] = vectors
        window.sparse = result
        self.telemetry.count_fallbacks(result.fallback_count, target.model_name)
        self.telemetry.record_stage("sparse_inference", result.latency_ms)
        return window

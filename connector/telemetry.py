"""OpenTelemetry spans and metrics; the only module that imports ``opentelemetry``.

Attributes carry counts, timings, model and device names only. Nothing here accepts free text from
chunks or queries: callers pass numbers and identifiers, and :func:`_clean` drops anything else.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, Status, StatusCode, TracerProvider

from connector import __version__

__all__ = ["Telemetry"]

_SCOPE = "connector"
AttributeValue = str | bool | int | float


class Telemetry:
    """A tracer and a meter, with the connector's instruments made once.

    Args:
        tracer_provider: Where spans go; default: the global provider (a no-op until configured).
        meter_provider: Where metrics go; default: the global provider.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self._sparse_chunks = meter.create_counter(
            "sparse.chunks", unit="{chunk}", description="Chunks given to the sparse stage"
        )
        self._sparse_fallbacks = meter.create_counter(
            "sparse.fallbacks", unit="{chunk}", description="Chunks that fell back"
        )
        self._sparse_latency = meter.create_histogram(
            "sparse.latency", unit="ms", description="Latency of one sparse inference call"
        )

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
        """A span around a block; an exception marks it failed with the exception's type only."""
        with self.tracer.start_as_current_span(
            name, attributes=_clean(attributes or {}), record_exception=False
        ) as span:
            try:
                yield span
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise

    def event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        """An event on the current span (a fallback, a lease, a batch-size change)."""
        trace.get_current_span().add_event(name, _clean(attributes or {}))

    def record_sparse(
        self, *, model: str, device: str, chunks: int, fallbacks: int, latency_ms: float
    ) -> None:
        """The ``sparse`` stage metrics of one inference call."""
        labels = {"model": model, "device": device}
        self._sparse_chunks.add(chunks, labels)
        self._sparse_fallbacks.add(fallbacks, labels)
        self._sparse_latency.record(latency_ms, labels)


def _clean(attributes: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Keep only scalar attributes; never let a container of unknown content through."""
    return {
        key: value
        for key, value in attributes.items()
        if isinstance(value, str | bool | int | float)
    }

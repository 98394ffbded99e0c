"""OpenTelemetry spans and metrics; the only module that imports ``opentelemetry``.

Attributes carry counts, timings, model and device names only. Nothing here accepts free text from
chunks or queries: callers pass numbers and identifiers, and :func:`_clean` drops anything else.
Exceptions mark a span failed with their type only, never their message.

Spans of a sync: ``sync`` with, per batch, ``dense``, ``sparse_inference`` and ``upsert`` as its
children (``upsert`` runs in the writer thread and is parented explicitly).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, Status, StatusCode, TracerProvider

from connector import __version__

if TYPE_CHECKING:
    from connector.settings import TelemetrySettings

__all__ = [
    "DEFAULT_SERVICE_NAME",
    "AttributeValue",
    "Telemetry",
    "context_from",
    "current_context",
    "in_context",
    "setup_telemetry",
    "trace_carrier",
]

_SCOPE = "connector"
DEFAULT_SERVICE_NAME = "qdrant-hybrid-connector"
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
        self._owned: tuple[Any, ...] = ()
        self._sparse_chunks = meter.create_counter(
            "sparse.chunks", unit="{chunk}", description="Chunks given to the sparse stage"
        )
        self._sparse_fallbacks = meter.create_counter(
            "sparse.fallbacks", unit="{chunk}", description="Chunks that fell back"
        )
        self._sparse_latency = meter.create_histogram(
            "sparse.latency", unit="ms", description="Latency of one sparse inference call"
        )
        self._chunks = meter.create_counter(
            "connector.chunks", unit="{chunk}", description="Chunks read, by what the sync did"
        )
        self._fallbacks = meter.create_counter(
            "connector.fallbacks",
            unit="{chunk}",
            description="Chunks whose sparse vector did not come from the model",
        )
        self._retries = meter.create_counter(
            "connector.retries", unit="{request}", description="Qdrant requests tried again"
        )
        self._stage_latency = meter.create_histogram(
            "connector.stage.latency", unit="ms", description="Latency of one batch in one stage"
        )

    @contextmanager
    def span(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        parent: object | None = None,
    ) -> Iterator[Span]:
        """A span around a block; an exception marks it failed with the exception's type only.

        Args:
            name: Span name.
            attributes: Scalars only; anything else is dropped.
            parent: A context from :meth:`context`, for a span started in another thread.
        """
        with self.tracer.start_as_current_span(
            name,
            context=parent,  # type: ignore[arg-type]
            attributes=_clean(attributes or {}),
            record_exception=False,
            # The SDK would put the exception's message in the status; it may quote input.
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise

    def context(self) -> object:
        """The current trace context, to hand to :meth:`span` in another thread."""
        return otel_context.get_current()

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

    def count_chunks(self, count: int, outcome: str) -> None:
        """Chunks of a batch by outcome (``encoded``, ``unchanged``, ``metadata_only``)."""
        if count:
            self._chunks.add(count, {"outcome": outcome})

    def count_fallbacks(self, count: int, model: str) -> None:
        """Chunks whose sparse vector came from metadata (or is missing)."""
        if count:
            self._fallbacks.add(count, {"model": model})

    def count_retry(self, operation: str) -> None:
        """One retried Qdrant request; ``operation`` is a fixed word, not a message."""
        self._retries.add(1, {"operation": operation})

    def record_stage(self, stage: str, latency_ms: float) -> None:
        """Latency of one batch in ``stage`` (``dense``, ``sparse_inference``, ``upsert``)."""
        self._stage_latency.record(latency_ms, {"stage": stage})

    def shutdown(self) -> None:
        """Export what is buffered and stop the providers this object made (if any)."""
        for provider in self._owned:
            provider.shutdown()
        self._owned = ()


_installed: Telemetry | None = None


def current_context() -> object:
    """The calling thread's trace context, to continue in another thread with
    :func:`in_context` (spans opened there get the current span as their parent)."""
    return otel_context.get_current()


def trace_carrier() -> dict[str, str]:
    """The calling thread's trace context as W3C ``traceparent`` headers, to continue the trace
    in another process (a Ray actor) with :func:`context_from`."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from(carrier: Mapping[str, str] | None) -> object | None:
    """The context in headers from :func:`trace_carrier`, for :meth:`Telemetry.span`'s
    ``parent``; ``None`` (a trace of its own) when there are none."""
    return propagate.extract(carrier) if carrier else None


@contextmanager
def in_context(context: object) -> Iterator[None]:
    """Run a block of another thread under ``context`` (from :func:`current_context`)."""
    token = otel_context.attach(context)  # type: ignore[arg-type]
    try:
        yield
    finally:
        otel_context.detach(token)


def setup_telemetry(
    config: TelemetrySettings, *, install: bool = True, stream: IO[str] | None = None
) -> Telemetry:
    """Tracer and meter providers from the ``[telemetry]`` settings, made once per process.

    Args:
        config: Exporter (``none``, ``console``, ``otlp``), endpoint and service name.
        install: Also make them the global providers, so that every :class:`Telemetry` made
            without providers (the sparse generator's, say) exports through them.
        stream: Where the console exporter writes (default: stderr, keeping stdout for results).

    Returns:
        A :class:`Telemetry`; call its :meth:`~Telemetry.shutdown` before the process ends so
        that buffered spans and metrics are exported.
    """
    global _installed
    if config.exporter == "none":
        return Telemetry()
    if install and _installed is not None:
        return _installed

    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = _resource(config.service_name)
    tracer_provider = SdkTracerProvider(resource=resource)
    if config.exporter == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        out = stream or sys.stderr
        tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out)))
        metric_exporter: Any = ConsoleMetricExporter(out=out)
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        traces = OTLPSpanExporter(endpoint=_signal_url(config.endpoint, "traces"))
        tracer_provider.add_span_processor(BatchSpanProcessor(traces))
        metric_exporter = OTLPMetricExporter(endpoint=_signal_url(config.endpoint, "metrics"))
    meter_provider = SdkMeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(metric_exporter)]
    )
    telemetry = Telemetry(tracer_provider, meter_provider)
    telemetry._owned = (tracer_provider, meter_provider)
    if install:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        _installed = telemetry
    return telemetry


def _resource(service_name: str | None) -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource

    attributes: dict[str, AttributeValue] = {SERVICE_VERSION: __version__}
    from_env = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    if service_name or not from_env:
        attributes[SERVICE_NAME] = service_name or DEFAULT_SERVICE_NAME
    return Resource.create(attributes)


def _signal_url(base: str | None, signal: str) -> str | None:
    """The exporter's URL for ``signal``; ``None`` lets it read the ``OTEL_*`` variables."""
    if base is None:
        return None
    base = base.rstrip("/")
    return base if base.endswith(f"/v1/{signal}") else f"{base}/v1/{signal}"


def _clean(attributes: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Keep only scalar attributes; never let a container of unknown content through."""
    return {
        key: value
        for key, value in attributes.items()
        if isinstance(value, str | bool | int | float)
    }

"""Telemetry of a sync: span tree, attributes, metrics, exporters, and never any chunk text."""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from qdrant_client import QdrantClient

from connector import __version__
from connector.pipeline.syncer import SparseTarget, Syncer
from connector.settings import TelemetrySettings
from connector.sparse.bm25 import Bm25
from connector.sparse.generator import ModelRegistry, SparseVectorGenerator
from connector.sparse.vector import SparseVec
from connector.store import Store, Writer
from connector.telemetry import Telemetry, setup_telemetry
from tests.fakes import FakeDense, ListSource, chunk

SECRET = "quokka-zanzibar-5521"
CORPUS = [
    chunk("a", f"Boundary layer transition {SECRET} on a flat plate.", topic="flow"),
    chunk("b", f"Heat transfer to a blunt body {SECRET} in hypersonic flight."),
    chunk("c", "Buckling of thin cylindrical shells under axial compression."),
    chunk("d", "Flutter of a cantilever wing in a subsonic wind tunnel."),
    chunk("e", f"Shock waves {SECRET} ahead of a cone."),
]


class InMemory:
    """A Telemetry whose spans and metrics stay in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.metrics = InMemoryMetricReader()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.telemetry = Telemetry(tracer_provider, MeterProvider(metric_readers=[self.metrics]))

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[tuple[dict, float]]:
        """(attributes, value) of every data point of metric ``name``."""
        out = []
        data = self.metrics.get_metrics_data()
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            value = getattr(point, "value", None)
                            if value is None:
                                value = point.count
                            out.append((dict(point.attributes), value))
        return out


class SparseFailingOn:
    """BM25 that fails on batches holding a marker, so those chunks fall back."""

    signature = "failing-bm25|1"

    def __init__(self, marker: str) -> None:
        self.inner = Bm25()
        self.marker = marker

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVec]:
        if any(self.marker in t for t in texts):
            raise ValueError(f"cannot encode {texts}")  # quotes its input, as foreign code may
        return self.inner.encode_documents(texts)

    def encode_query(self, text: str) -> SparseVec:
        return self.inner.encode_query(text)

    def term_ids(self, term: str) -> list[tuple[int, str]]:
        return self.inner.term_ids(term)


class FlakyClient:
    """A QdrantClient whose first upsert fails with a dropped connection."""

    def __init__(self, inner: QdrantClient) -> None:
        self.inner = inner
        self.failures = 1

    def upsert(self, *args, **kwargs):
        if self.failures:
            self.failures -= 1
            raise httpx.ConnectError("connection reset by peer")
        return self.inner.upsert(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[InMemory, Syncer]]:
    memory = InMemory()
    client = FlakyClient(QdrantClient(path=str(tmp_path / "qdrant")))
    store = Store(
        client,  # type: ignore[arg-type]
        sleep=lambda s: None,
        telemetry=memory.telemetry,
    )
    sink = Writer(store, "chunks", batch_size=2)
    generator = SparseVectorGenerator(
        ModelRegistry(encoders={"qdrant-bm25": SparseFailingOn("Shock")}),
        telemetry=memory.telemetry,
    )
    target = SparseTarget(generator, "qdrant-bm25", "qdrant-bm25", idf=True)
    syncer = Syncer(sink, [FakeDense()], target, batch_size=2, telemetry=memory.telemetry)
    yield memory, syncer
    store.close()


def test_sync_span_is_the_parent_of_every_batch_stage(recorded) -> None:
    memory, syncer = recorded
    report = syncer.run(ListSource(CORPUS), run_id="7d0c3f8e-3c1e-4a4e-9d59-5e1f1b2a9c01")

    spans = memory.finished()
    (sync,) = [s for s in spans if s.name == "sync"]
    models = [s for s in spans if s.name == "dense_model"]
    children = [s for s in spans if s is not sync and s.name != "dense_model"]
    assert sorted({s.name for s in children}) == ["dense", "sparse_inference", "upsert"]
    # Each model's call sits under its batch's dense span.
    dense_ids = {s.context.span_id for s in children if s.name == "dense"}
    assert len(models) == 3 and {m.parent.span_id for m in models} == dense_ids
    # 5 chunks in batches of 2: three batches, each through each stage.
    assert [s.name for s in children].count("dense") == 3
    assert [s.name for s in children].count("sparse_inference") == 3
    assert [s.name for s in children].count("upsert") >= 3
    for span in children:
        assert span.parent is not None and span.parent.span_id == sync.context.span_id, span.name
        assert span.context.trace_id == sync.context.trace_id
    upserts = [s for s in children if s.name == "upsert"]
    assert {s.attributes["points"] for s in upserts} <= {1, 2}
    assert sum(s.attributes["points"] for s in upserts) == 5

    assert sync.attributes["run_id"] == report.run_id == "7d0c3f8e-3c1e-4a4e-9d59-5e1f1b2a9c01"
    assert sync.attributes["status"] == "succeeded"
    assert sync.attributes["chunks_seen"] == 5 and sync.attributes["collection"] == "chunks"
    dense = [s for s in children if s.name == "dense"]
    assert [s.attributes["chunk_count"] for s in dense] == [2, 2, 1]
    assert {s.attributes["models"] for s in dense} == {"fake"}
    assert all(s.attributes["latency_ms"] >= 0 for s in dense + upserts)


def test_counters_and_stage_histograms(recorded) -> None:
    memory, syncer = recorded
    report = syncer.run(ListSource(CORPUS))

    chunks = memory.points("connector.chunks")
    assert chunks == [({"outcome": "encoded"}, 5)]
    # The batch holding "Shock" (chunk e, alone in the third batch) fell back.
    assert report.sparse.fallbacks == 1
    assert memory.points("connector.fallbacks") == [({"model": "qdrant-bm25"}, 1)]
    assert report.writes.retries == 1
    assert memory.points("connector.retries") == [({"operation": "upsert"}, 1)]
    latency = {attrs["stage"]: count for attrs, count in memory.points("connector.stage.latency")}
    assert latency["dense"] == 3 and latency["sparse_inference"] == 3
    assert latency["upsert"] >= 3

    syncer.run(ListSource(CORPUS))  # nothing changed, except chunk e retried for its sparse vector
    chunks = dict((a["outcome"], v) for a, v in memory.points("connector.chunks"))
    assert chunks == {"encoded": 6, "unchanged": 4}


def test_no_chunk_text_in_any_span_event_or_metric(recorded) -> None:
    memory, syncer = recorded
    syncer.run(ListSource(CORPUS))
    exported = "".join(span.to_json() for span in memory.finished())
    exported += memory.metrics.get_metrics_data().to_json()
    assert "sparse_inference" in exported and "connector.chunks" in exported
    assert SECRET not in exported
    for word in ("Boundary", "Buckling", "cantilever", "Shock"):
        assert word not in exported


def test_a_failed_sync_marks_its_span_with_the_error_type_only(tmp_path: Path) -> None:
    memory = InMemory()
    store = Store(QdrantClient(path=str(tmp_path / "q")), telemetry=memory.telemetry)
    sink = Writer(store, "chunks")
    syncer = Syncer(sink, [FakeDense()], telemetry=memory.telemetry, strict=True)
    duplicate = [chunk("a", f"one {SECRET}"), chunk("a", f"two {SECRET}")]
    with pytest.raises(Exception, match="duplicate chunk id"):
        syncer.run(ListSource(duplicate))
    store.close()
    (sync,) = [s for s in memory.finished() if s.name == "sync"]
    assert sync.status.status_code.name == "ERROR"
    assert sync.status.description == "InvalidRecord"
    assert SECRET not in sync.to_json()


def test_console_exporter_writes_spans_with_service_name_and_version() -> None:
    out = io.StringIO()
    telemetry = setup_telemetry(TelemetrySettings(exporter="console"), install=False, stream=out)
    with telemetry.span("sync", {"run_id": "r1"}):
        with telemetry.span("dense", {"chunk_count": 2}):
            pass
    telemetry.shutdown()
    text = out.getvalue()
    assert '"name": "sync"' in text and '"name": "dense"' in text
    assert '"service.name": "qdrant-hybrid-connector"' in text
    assert f'"service.version": "{__version__}"' in text


def test_none_exporter_exports_nothing_and_installs_nothing() -> None:
    from opentelemetry import trace

    before = trace.get_tracer_provider()
    telemetry = setup_telemetry(TelemetrySettings())
    with telemetry.span("sync"):
        pass
    telemetry.shutdown()
    assert trace.get_tracer_provider() is before


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (the handler's API)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    received: list[tuple[str, bytes]] = []
    handler = type("Handler", (_Collector,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("from_env", [False, True])
def test_otlp_exporter_posts_to_the_configured_or_standard_endpoint(
    collector, monkeypatch: pytest.MonkeyPatch, from_env: bool
) -> None:
    url, received = collector
    if from_env:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "ingest-nightly")
        config = TelemetrySettings(exporter="otlp")
    else:
        config = TelemetrySettings(exporter="otlp", endpoint=url, service_name="ingest-a")
    telemetry = setup_telemetry(config, install=False)
    with telemetry.span("sync", {"run_id": "r1"}):
        telemetry.count_chunks(3, "encoded")
    telemetry.shutdown()

    paths = {path for path, _ in received}
    assert paths == {"/v1/traces", "/v1/metrics"}
    traces = b"".join(body for path, body in received if path == "/v1/traces")
    assert b"sync" in traces and b"run_id" in traces
    assert (b"ingest-nightly" if from_env else b"ingest-a") in traces
    assert __version__.encode() in traces


def test_settings_reject_an_endpoint_without_scheme() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="must start with http"):
        TelemetrySettings(exporter="otlp", endpoint="collector:4318")
    assert json.loads(TelemetrySettings().model_dump_json())["exporter"] == "none"

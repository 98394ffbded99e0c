"""SparseVectorGenerator: the seed's contract, the fallback chain, telemetry without text."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from connector.errors import ConfigError, GpuLeaseUnavailable, ModelError
from connector.sparse import ChunkRecord, SparseInferenceResult, SparseVectorGenerator
from connector.sparse.bm25 import Bm25
from connector.sparse.generator import ModelRegistry
from connector.sparse.vector import SparseVec
from connector.telemetry import Telemetry

SECRET = "zanzibar-quokka-7731 confidential wording"


class FlakySparse:
    """A movable sparse model that fails on chosen devices or on batches holding a marker."""

    def __init__(self, fail_on: str | None = None, fail_devices: Sequence[str] = ()) -> None:
        self.inner = Bm25()
        self.fail_on = fail_on
        self.fail_devices = set(fail_devices)
        self.device = "cpu"
        self.devices_used: list[str] = []
        self.signature = "flaky|1"

    def to(self, device: str) -> None:
        self.device = device

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVec]:
        self.devices_used.append(self.device)
        if self.device in self.fail_devices:
            raise RuntimeError(f"CUDA out of memory while encoding {texts[0]}")
        if self.fail_on and any(self.fail_on in t for t in texts):
            raise ValueError(f"cannot encode {texts}")
        return self.inner.encode_documents(texts)

    def encode_query(self, text: str) -> SparseVec:
        return self.inner.encode_query(text)

    def term_ids(self, term: str) -> list[tuple[int, str]]:
        return self.inner.term_ids(term)


class FakePool:
    def __init__(self, available: bool = True) -> None:
        self.available = available
        self.leases: list[str] = []

    @contextmanager
    def lease(self, device_ids, holder: str) -> Iterator[str]:
        if not self.available:
            raise GpuLeaseUnavailable("all GPUs busy")
        self.leases.append(holder)
        yield "cuda:0"


def chunks(n: int, **metadata) -> list[ChunkRecord]:
    return [
        ChunkRecord(
            text=f"wing flutter test number {i} at supersonic speed", metadata=dict(metadata)
        )
        for i in range(n)
    ]


def with_model(encoder, **kwargs) -> SparseVectorGenerator:
    return SparseVectorGenerator(ModelRegistry(encoders={"qdrant-bm25": encoder}), **kwargs)


def test_defaults_give_bm25_vectors_in_the_seed_shape() -> None:
    texts = chunks(3)
    result = SparseVectorGenerator().generate(texts, "qdrant-bm25")
    assert isinstance(result, SparseInferenceResult)
    assert (result.success, result.fallback_count, result.fallback_indices) == (True, 0, [])
    assert result.device == "cpu" and result.model_name == "qdrant-bm25"
    assert result.latency_ms > 0 and result.error_message is None
    expected = Bm25().encode_documents([c.text for c in texts])
    for vector, vec in zip(result.vectors, expected, strict=True):
        assert vector is not None
        assert vector["indices"] == vec.indices and vector["values"] == vec.values
        assert vector["tokens"] == vec.tokens
        stats = vector["stats"]
        assert stats["unique_terms"] == len(vec.indices)
        assert stats["total_terms"] == len(Bm25().tokenize(texts[0].text))
        assert stats["weighting"] == "bm25-tf"
        assert stats["weight_norm"] == pytest.approx(sum(v * v for v in vec.values) ** 0.5)


def test_query_vectors_differ_from_document_vectors() -> None:
    generator = SparseVectorGenerator()
    query = generator.encode_query("flutter flutter of wings", "qdrant-bm25")
    assert query["values"] == [1.0, 1.0]
    doc = generator.generate([ChunkRecord(text="flutter flutter of wings")], "qdrant-bm25")
    assert doc.vectors[0]["values"] != [1.0, 1.0]


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known: qdrant-bm25, qdrant-bm25-engine"):
        SparseVectorGenerator().generate(chunks(1), "bm99")


def test_missing_model_falls_back_to_metadata_in_the_same_index_space(tmp_path) -> None:
    registry = ModelRegistry({"bm42": {"model": str(tmp_path / "no-such-model")}})
    generator = SparseVectorGenerator(registry)
    records = [
        ChunkRecord(text="a", metadata={"sparse_features": {"Turbulence": 2.0, "the": 5.0}}),
        ChunkRecord(
            text="b", metadata={"sparse_features": {"indices": [7, 3], "values": [0.5, 1]}}
        ),
        ChunkRecord(text="c", metadata={}),
    ]
    result = generator.generate(records, "qdrant-minilm-attention")
    assert not result.success and "model unavailable" in result.error_message
    assert result.fallback_indices == [0, 1, 2] and result.fallback_count == 3
    assert set(result.fallback_reasons) == {0, 1, 2}
    first = result.vectors[0]
    # The stem of "Turbulence" hashed like BM25/BM42 queries do; the stopword went nowhere.
    assert first["indices"] == [Bm25().term_id("turbul")] and first["values"] == [2.0]
    assert first["stats"]["weighting"] == "metadata"
    assert result.vectors[1]["indices"] == [7, 3]
    assert result.vectors[2] is None


def test_failure_on_one_batch_falls_back_for_that_batch_only() -> None:
    # Texts of one length: batches run longest first, so equal lengths keep the input order.
    records = [
        ChunkRecord(text=f"wing flutter test {i:03d}", metadata={"sparse_features": {"flutter": 1}})
        for i in range(300)
    ]
    records[260] = ChunkRecord(text="marker in batch 2 xxx", metadata={})
    assert len({len(r.text) for r in records}) == 1
    result = with_model(FlakySparse(fail_on="marker")).generate(records, "qdrant-bm25")
    assert result.fallback_indices == list(range(256, 300))
    assert not result.success and result.error_message == "ValueError on cpu"
    assert result.vectors[0]["stats"]["weighting"] == "bm25-tf"
    assert result.vectors[257]["stats"]["weighting"] == "metadata"
    assert result.vectors[260] is None  # no metadata to fall back on


def test_gpu_requested_without_one_runs_on_the_cpu() -> None:
    model = FlakySparse()
    result = with_model(model, lease_pool=FakePool(available=False)).generate(
        chunks(3), "qdrant-bm25", use_gpu=True, device_ids=[0]
    )
    assert result.device == "cpu" and result.success and model.devices_used == ["cpu"]


def test_gpu_requested_on_this_machine_says_cpu() -> None:
    # The default pool asks torch; this machine (and CI) has no CUDA device.
    registry = ModelRegistry(encoders={"qdrant-bm25": FlakySparse()})
    result = SparseVectorGenerator(registry).generate(chunks(2), "qdrant-bm25", use_gpu=True)
    assert result.device == "cpu" and result.success


def test_batch_failing_on_the_gpu_is_retried_on_the_cpu_and_model_staged_back() -> None:
    model, pool = FlakySparse(fail_devices=["cuda:0"]), FakePool()
    result = with_model(model, lease_pool=pool).generate(chunks(3), "qdrant-bm25", use_gpu=True)
    assert pool.leases == ["qdrant-bm25"]
    assert model.devices_used == ["cuda:0", "cpu"]
    assert result.fallback_count == 0 and all(result.vectors)
    assert model.device == "cpu"  # staged back after the lease
    assert "CUDA out of memory" not in (result.error_message or "")


def test_no_text_reaches_spans_metrics_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry(tracer_provider, MeterProvider(metric_readers=[reader]))
    records = [
        ChunkRecord(text=f"{SECRET} one", metadata={"sparse_features": {SECRET: 1.0}}),
        ChunkRecord(text=f"marker {SECRET}", metadata={}),
    ]
    generator = with_model(FlakySparse(fail_on="marker"), telemetry=telemetry)
    caplog.set_level(logging.DEBUG)
    result = generator.generate(records, "qdrant-bm25")
    generator.encode_query(SECRET, "qdrant-bm25")

    (span,) = exporter.get_finished_spans()
    assert span.name == "sparse_inference"
    attributes = dict(span.attributes)
    assert attributes == {
        "model": "qdrant-bm25",
        "device": "cpu",
        "latency_ms": pytest.approx(result.latency_ms, abs=0.01),
        "fallback_count": 2,
        "chunk_count": 2,
        "fallback_ratio": 1.0,
    }
    metrics = reader.get_metrics_data().to_json()
    assert '"sparse.fallbacks"' in metrics and '"sparse.latency"' in metrics
    exported = str(span.to_json()) + metrics + caplog.text + str(result.error_message)
    assert "zanzibar" not in exported and "quokka" not in exported
    assert "fell back" in caplog.text


def test_splade_without_a_checkpoint_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="sparse.splade.model"):
        SparseVectorGenerator().generate(chunks(1), "splade")


def test_registry_error_for_a_model_that_cannot_load(tmp_path) -> None:
    registry = ModelRegistry({"splade": {"model": str(tmp_path / "missing")}})
    result = SparseVectorGenerator(registry).generate(chunks(2), "splade")
    assert result.fallback_count == 2 and result.vectors == [None, None]
    with pytest.raises(ModelError):
        SparseVectorGenerator(registry).encode_query("x", "splade")

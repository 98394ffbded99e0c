"""SparseVectorGenerator: the seed's contract, the fallback chain, telemetry without text."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from connector.errors import ConfigError, ModelError
from connector.gpu import BatchPolicy, DeviceExecutor, LeasePool, read_leases
from connector.settings import load_settings
from connector.sparse import ChunkRecord, SparseInferenceResult, SparseVectorGenerator
from connector.sparse.bm25 import Bm25
from connector.sparse.generator import ModelRegistry
from connector.sparse.vector import SparseVec
from connector.telemetry import Telemetry
from connector.wiring import sparse_target
from tests.fakes import GIB, FakeMemory, FakeProbe, HungryModel, fake_cuda, recording_telemetry

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


class HungrySparse(FlakySparse):
    """BM25 vectors from a model that needs ``cost`` bytes of device memory per text."""

    def __init__(self, memory: FakeMemory, cost: int, cpu_error: type[Exception] | None = None):
        super().__init__()
        self.hungry = HungryModel(memory, cost, cpu_error=cpu_error)

    def to(self, device: str) -> None:
        self.hungry.to(device)

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVec]:
        self.hungry.encode(texts)
        return self.inner.encode_documents(texts)


def gpu_executor(tmp_path: Path, gpus: int = 1, memory: FakeMemory | None = None, **kwargs):
    pool = LeasePool(tmp_path, FakeProbe(gpus), timeout_s=0.2, cuda_device=fake_cuda)
    return DeviceExecutor(pool, BatchPolicy(), memory or FakeMemory(), **kwargs)


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


def test_unknown_model_falls_back_to_metadata_in_bm25_space_and_lists_the_known_ones() -> None:
    records = [
        ChunkRecord(text="a", metadata={"sparse_features": {"Turbulence": 2.0}}),
        ChunkRecord(text="b", metadata={"sparse_features": {"indices": [7], "values": [0.5]}}),
        ChunkRecord(text="c", metadata={}),
    ]
    result = SparseVectorGenerator().generate(records, "bm99", use_gpu=True)
    assert (result.success, result.model_name, result.device) == (False, "bm99", "metadata")
    assert "'bm99'" in result.error_message
    assert "known: qdrant-bm25, qdrant-bm25-engine" in result.error_message
    assert result.fallback_indices == [0, 1, 2] and result.fallback_count == 3
    assert result.fallback_reasons == dict.fromkeys(range(3), result.error_message)
    first = result.vectors[0]
    assert first["indices"] == [Bm25().term_id("turbul")] and first["values"] == [2.0]
    assert first["stats"]["weighting"] == "metadata"
    assert result.vectors[1]["indices"] == [7] and result.vectors[2] is None


def test_unknown_model_is_still_an_error_for_queries_and_signatures() -> None:
    generator = SparseVectorGenerator()
    with pytest.raises(ConfigError, match="known: qdrant-bm25, qdrant-bm25-engine"):
        generator.encode_query("wings", "bm99")
    with pytest.raises(ConfigError, match="known: qdrant-bm25, qdrant-bm25-engine"):
        generator.signature("bm99")


def test_settings_naming_an_unknown_model_fail_when_wired() -> None:
    settings = load_settings(None, {"sparse": {"model": "bm99"}})
    with pytest.raises(ConfigError, match="unknown sparse model 'bm99'; known: qdrant-bm25"):
        sparse_target(settings)


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


def test_gpu_requested_without_one_runs_on_the_cpu(tmp_path: Path) -> None:
    model = FlakySparse()
    result = with_model(model, executor=gpu_executor(tmp_path, gpus=0)).generate(
        chunks(3), "qdrant-bm25", use_gpu=True, device_ids=[0]
    )
    assert result.device == "cpu" and result.success and model.devices_used == ["cpu"]


def test_gpu_requested_on_this_machine_says_cpu() -> None:
    # The default pool asks torch; this machine (and CI) has no CUDA device.
    registry = ModelRegistry(encoders={"qdrant-bm25": FlakySparse()})
    result = SparseVectorGenerator(registry).generate(chunks(2), "qdrant-bm25", use_gpu=True)
    assert result.device == "cpu" and result.success


def test_batch_failing_on_the_gpu_is_retried_on_the_cpu_and_model_staged_back(
    tmp_path: Path,
) -> None:
    seen = []

    class Peeking(FlakySparse):
        def encode_documents(self, texts):
            seen.extend(read_leases(tmp_path))
            return super().encode_documents(texts)

    model = Peeking(fail_devices=["cuda:0"])
    generator = with_model(model, executor=gpu_executor(tmp_path))
    result = generator.generate(chunks(3), "qdrant-bm25", use_gpu=True)
    assert [r.model for r in seen] == ["qdrant-bm25"]  # leased while on the GPU, not after
    assert model.devices_used == ["cuda:0", "cpu"]
    assert read_leases(tmp_path) == []
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


def test_out_of_memory_halves_the_sparse_batches(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungrySparse(memory, cost=GIB)  # 12 GiB cap: 12 texts fit
    generator = with_model(model, executor=gpu_executor(tmp_path, memory=memory))
    result = generator.generate(chunks(40), "qdrant-bm25", use_gpu=True)
    assert result.success and result.fallback_count == 0 and result.device == "cuda:0"
    assert model.hungry.gpu_sizes()[:3] == [40, 20, 10]
    assert all(v["stats"]["weighting"] == "bm25-tf" for v in result.vectors)


def test_gpu_then_cpu_failing_ends_in_the_metadata_fallback(tmp_path: Path) -> None:
    memory = FakeMemory()
    model = HungrySparse(memory, cost=4 * GIB, cpu_error=RuntimeError)  # 4 texts: 16 GiB
    telemetry, exporter = recording_telemetry()
    generator = with_model(
        model, executor=gpu_executor(tmp_path, memory=memory), telemetry=telemetry
    )
    records = chunks(8, sparse_features={"flutter": 1.0})
    result = generator.generate(records, "qdrant-bm25", use_gpu=True)

    assert result.fallback_count == 8 and not result.success
    assert result.error_message == "RuntimeError on cpu"
    assert all(v["stats"]["weighting"] == "metadata" for v in result.vectors)
    assert model.hungry.gpu_sizes() == [8, 4, 4]
    (span,) = exporter.get_finished_spans()
    names = [e.name for e in span.events]
    assert names == [
        "gpu_lease_acquired",
        "gpu_oom",
        "batch_size_changed",
        "gpu_oom",
        "fallback",
        "gpu_oom",
        "fallback",
        "gpu_lease_released",
        "fallback",
    ]
    last = dict(span.events[-1].attributes)
    assert last == {
        "model": "qdrant-bm25",
        "from": "cuda:0",
        "to": "metadata",
        "reason": "RuntimeError on cpu",
        "chunks": 8,
    }
    assert "supersonic" not in str(span.to_json())

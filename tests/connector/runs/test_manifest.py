"""processing_summary.json: 4.0 without sparse, 4.1 with it (additive only); the JSON schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict
from qdrant_client import QdrantClient

from connector.cli import main
from connector.pipeline.syncer import SparseTarget, Syncer
from connector.runs import RunRecorder
from connector.runs.manifest import SCHEMA_FILE, ProcessingSummary, summary_json_schema
from connector.sparse.generator import SparseVectorGenerator
from connector.store import Store, Writer
from tests.fakes import FakeDense, ListSource, chunk
from tests.paths import FIXTURES

FIXTURES = FIXTURES


def corpus() -> list:
    lines = (FIXTURES / "corpus.jsonl").read_text().splitlines()[:12]
    return [chunk(str(i), json.loads(line)["text"]) for i, line in enumerate(lines)]


def run_once(tmp_path: Path, name: str, sparse: bool) -> dict[str, Any]:
    """One recorded sync of the same corpus into its own collection; its manifest as JSON."""
    sink = Writer(Store(QdrantClient(path=str(tmp_path / name))), "chunks", batch_size=4)
    target = SparseTarget(SparseVectorGenerator(), "qdrant-bm25", "qdrant-bm25", idf=True)
    syncer = Syncer(sink, [FakeDense()], target if sparse else None, batch_size=5)
    try:
        with RunRecorder(syncer, "memory://fixture", tmp_path / "state") as recorder:
            syncer.run(ListSource(corpus(), name="memory://fixture"), run_id=recorder.run_id)
    finally:
        sink.store.close()
    path = tmp_path / "state" / "runs" / recorder.run_id / "processing_summary.json"
    return json.loads(path.read_text())


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out |= flatten(value, f"{prefix}{key}.")
        return out
    return {prefix.rstrip("."): data}


class Reader40(BaseModel):
    """What a tool written against schema 4.0 knows, and nothing of sparse."""

    model_config = ConfigDict(extra="ignore")

    class Run(BaseModel):
        model_config = ConfigDict(extra="ignore")
        id: str
        status: str
        source: str
        collection: str
        started_at: str
        finished_at: str | None

    class Upsert(BaseModel):
        model_config = ConfigDict(extra="ignore")
        points_upserted: int
        deleted: int
        retries: int

    schema_version: str
    run: Run
    counts: dict[str, int]
    upsert: Upsert
    performance: dict[str, Any]


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    tmp_path = tmp_path_factory.mktemp("manifests")
    return run_once(tmp_path, "off", sparse=False), run_once(tmp_path, "on", sparse=True)


def test_sparse_off_is_4_0_and_sparse_on_is_4_1(both) -> None:
    off, on = both
    assert off["schema_version"] == "4.0" and off["sparse_run"] is None
    assert off["run"]["sparse_enabled"] is False
    assert on["schema_version"] == "4.1" and on["run"]["sparse_enabled"] is True
    sparse = on["sparse_run"]
    assert sparse["run_id"] == on["run"]["id"] and sparse["sparse_model"] == "qdrant-bm25"
    assert sparse["coverage"] == {"total": 12, "available": 12, "coverage_ratio": 1.0}
    assert sparse["fallback_used"] is False and sparse["devices"] == {"qdrant-bm25": "cpu"}
    assert sparse["document_sparse_vectors"]["written"] == 12
    assert sparse["latency_ms"] > 0 and sparse.get("query_sparse_vector") is None


def test_4_1_only_adds_the_sparse_run_section(both) -> None:
    off, on = map(flatten, both)
    # The one 4.0 leaf missing from 4.1 is `sparse_run: null`, which 4.1 fills as a section.
    assert set(off) - set(on) == {"sparse_run"}
    added = set(on) - set(off)
    assert added and all(key.startswith("sparse_run.") for key in added), added
    assert off["sparse_run"] is None


def test_every_4_0_key_means_the_same_in_4_1(both) -> None:
    off, on = map(flatten, both)
    # Same corpus, same dense model: every count and stage figure that is not a time agrees.
    # What differs by design: the version, the sparse switch, ids, clock readings and rates.
    by_design = {"schema_version", "run.sparse_enabled", "sparse_run"}
    varying = (
        "run.id",
        "_at",
        "latency_ms",
        "duration_s",
        "chunks_per_s",
        "stage_busy_s",
        "config_digest",
    )
    compared = [k for k in off if k not in by_design and not any(v in k for v in varying)]
    assert len(compared) > 20
    for key in compared:
        assert off[key] == on[key], key
    assert off["counts.chunks_seen"] == on["counts.chunks_seen"] == 12
    assert off["upsert.points_upserted"] == on["upsert.points_upserted"] == 12
    assert off["dense.vectors.fake"] == on["dense.vectors.fake"] == 12
    assert off["run.status"] == on["run.status"] == "succeeded"
    # A figure that sparse alone fills is there in 4.0 too, as null.
    assert off["performance.chunks_per_s.sparse_inference"] is None
    assert on["performance.chunks_per_s.sparse_inference"] > 0


def test_a_4_0_reader_parses_both(both) -> None:
    off, on = both
    for manifest in (off, on):
        old = Reader40.model_validate(manifest)
        assert old.counts["chunks_seen"] == 12 and old.run.status == "succeeded"
        assert old.upsert.points_upserted == 12
        assert old.performance["chunks_per_s"]["overall"] > 0
        assert ProcessingSummary.model_validate(manifest).model_dump(mode="json") == manifest


def test_stage_sections_and_performance_baseline(both) -> None:
    off, on = both
    assert on["dense"]["models"] == [{"vector": "fake", "signature": FakeDense().signature}]
    assert on["dense"]["device"] == "auto" and on["dense"]["latency_ms"] >= 0
    assert on["upsert"]["retries"] == 0 and on["upsert"]["latency_ms"] > 0
    performance = on["performance"]
    assert set(performance["chunks_per_s"]) == {"overall", "dense", "sparse_inference", "upsert"}
    assert performance["devices"] == [] and performance["soft_limit_exceedances"] == 0
    assert on["progress"]["chunks_done"] == 12 and on["progress"]["eta_s"] is None
    assert on["run"]["process"]["pid"] > 0 and on["run"]["finished_at"] is not None


def test_checked_in_schema_is_current() -> None:
    expected = json.dumps(summary_json_schema(), indent=2) + "\n"
    assert SCHEMA_FILE.read_text() == expected, (
        "the manifest models changed: run "
        "`connector schema > connector/schemas/processing_summary.schema.json`"
    )
    schema = json.loads(expected)
    assert schema["properties"]["schema_version"]["enum"] == ["4.0", "4.1"]
    assert {"run", "counts", "dense", "upsert", "performance", "sparse_run"} <= set(
        schema["properties"]
    )


def test_schema_command_prints_the_checked_in_schema(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "connector.toml").write_text("[qdrant]\nnot_a_key = 1\n")  # needs no settings
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == SCHEMA_FILE.read_text()


def test_devices_reported_by_a_lease_fill_the_performance_baseline(tmp_path: Path) -> None:
    from connector.runs.manifest import DeviceUsage

    usage = DeviceUsage(
        device="cuda:0",
        peak_vram_mb=10_900.0,
        vram_hard_cap_mb=12_288.0,
        vram_soft_limit_mb=10_240.0,
        soft_limit_exceedances=2,
    )
    sink = Writer(Store(QdrantClient(path=str(tmp_path / "q"))), "chunks")
    syncer = Syncer(sink, [FakeDense()])
    recorder = RunRecorder(syncer, "memory://x", tmp_path / "state", devices=lambda: [usage])
    with recorder:
        syncer.run(ListSource(corpus()[:2], name="memory://x"), run_id=recorder.run_id)
    sink.store.close()
    assert recorder.summary is not None
    performance = recorder.summary.performance
    assert performance is not None and performance.devices == [usage]
    assert performance.soft_limit_exceedances == 2

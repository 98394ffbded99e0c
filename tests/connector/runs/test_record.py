"""The run record: one object filled by the syncer; the manifest, progress.json and the --json
report are derived from it and agree."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from connector.pipeline.syncer import SparseTarget, Syncer
from connector.runs import Counts, RunRecord, RunRecorder, read_progress
from connector.runs.manifest import read_summary, summary_path
from connector.sparse.generator import SparseVectorGenerator
from connector.store import Store, Writer
from tests.fakes import FakeDense, ListSource, chunk

CORPUS = [chunk(f"c{i}", f"Boundary layer transition on cone number {i}.") for i in range(7)]

JSON_REPORT_KEYS = {
    "run_id",
    "source",
    "collection",
    "status",
    "status_reason",
    "duration_s",
    "chunks_seen",
    "encoded",
    "skipped_unchanged",
    "payload_only",
    "upserted",
    "vectors_updated",
    "deleted",
    "retries",
    "payloads_updated",
    "upsert_latency_ms",
    "vectors_encoded",
    "dense_models",
    "dense_device",
    "dense_latency_ms",
    "sparse_model",
    "sparse_vector_name",
    "sparse_device",
    "sparse_fallbacks",
    "sparse_fallback_reason",
    "sparse_empty",
    "sparse_latency_ms",
    "skipped",
    "skipped_by_kind",
    "skipped_records",
    "blank_lines",
    "deletes_deferred",
    "truncated",
    "compute",
}
"""The keys of `connector sync --json` (a published format: none may go or change its name)."""


def record(**changes: object) -> RunRecord:
    base = RunRecord(run_id="r", source="memory://x", collection="chunks", batch_size=8)
    for name, value in changes.items():
        setattr(base, name, value)
    return base


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Writer]:
    store = Store(QdrantClient(path=str(tmp_path / "qdrant")))
    yield Writer(store, "chunks", batch_size=2)
    store.close()


def recorded_run(sink: Writer, state: Path) -> tuple[Syncer, RunRecorder]:
    target = SparseTarget(SparseVectorGenerator(), "qdrant-bm25", "qdrant-bm25", idf=True)
    syncer = Syncer(sink, [FakeDense()], target, batch_size=3)
    recorder = RunRecorder(syncer, "memory://test", state, config_digest="c0ffee")
    with recorder:
        syncer.run(ListSource([*CORPUS, CORPUS[0]]), run_id=recorder.run_id)
    return syncer, recorder


def test_the_json_report_has_exactly_the_published_keys() -> None:
    assert set(record().report()) == JSON_REPORT_KEYS


def test_every_count_is_in_the_manifest_counts_and_the_json_report() -> None:
    counts = Counts(**{f.name: 10 + i for i, f in enumerate(fields(Counts))})
    run = record(counts=counts)
    run.writes.upserted, run.writes.deleted, run.skips.count = 3, 2, 1
    summary, report = run.summary(), run.report()
    for f in fields(Counts):
        assert summary.counts[f.name] == report[f.name] == getattr(counts, f.name), f.name
    assert summary.counts == run.totals()
    assert summary.counts.items() <= report.items()
    assert [summary.counts[key] for key in ("upserted", "deleted", "skipped")] == [3, 2, 1]


def test_a_count_added_to_counts_reaches_the_manifest_and_the_report_unaided() -> None:
    @dataclass(slots=True)
    class MoreCounts(Counts):
        reranked: int = 0

    run = record(counts=MoreCounts(chunks_seen=4, reranked=7))
    assert run.summary().counts["reranked"] == run.report()["reranked"] == 7


def test_a_recorded_run_gives_one_story_in_every_view(sink: Writer, tmp_path: Path) -> None:
    state = tmp_path / "state"
    syncer, recorder = recorded_run(sink, state)
    run = syncer.record
    assert run is not None and run is recorder.record
    report = run.report()
    manifest = read_summary(summary_path(state, run.run_id))
    live = read_progress(state)
    assert manifest is not None and live is not None

    assert report["status"] == manifest.run.status == live.status == "succeeded"
    assert report["run_id"] == manifest.run.id == live.run_id == recorder.run_id
    assert manifest.run.started_at == live.started_at == run.started_at
    assert manifest.run.config_digest == run.config_digest == "c0ffee"
    assert manifest.run.process == live.process == run.process
    assert manifest.counts == {key: report[key] for key in manifest.counts}
    assert (report["chunks_seen"], report["upserted"], report["skipped"]) == (7, 7, 1)
    assert manifest.progress.chunks_done == live.chunks_done == 7
    assert manifest.upsert is not None and manifest.upsert.points_upserted == report["upserted"]
    assert manifest.skipped.model_dump() == {
        "count": report["skipped"],
        "by_kind": report["skipped_by_kind"],
        "records": report["skipped_records"],
        "blank_lines": report["blank_lines"],
        "deletes_deferred": report["deletes_deferred"],
    }
    sparse = manifest.sparse_run
    assert sparse is not None and sparse.sparse_model == report["sparse_model"]
    assert sparse.document_sparse_vectors["fallbacks"] == report["sparse_fallbacks"] == 0
    assert live.fallbacks == report["sparse_fallbacks"]
    assert live.sparse_device == report["sparse_device"] == sparse.devices["qdrant-bm25"]
    assert manifest.dense is not None
    assert live.dense_device == report["dense_device"] == manifest.dense.device
    assert live.batch_size == 3
    assert json.loads(json.dumps(report, sort_keys=True)) == report  # all of it is JSON


def test_the_writer_counts_into_the_record_while_the_run_goes_only(sink: Writer) -> None:
    syncer = Syncer(sink, [FakeDense()], batch_size=3)
    shared: list[bool] = []

    class Watched(ListSource):
        def __iter__(self):
            for item in super().__iter__():
                shared.append(syncer.record is not None and sink.counts is syncer.record.writes)
                yield item

    run = syncer.run(Watched(CORPUS))
    assert shared and all(shared)
    assert sink.counts is not run.writes  # later requests through the sink are not the run's
    assert run.writes.upserted == run.report()["upserted"] == 7


def test_the_eta_is_given_while_running_only() -> None:
    run = record()
    run.progress.start(total_bytes=1000)
    run.progress.advance(chunks=5, bytes_read=250)
    running = run.summary().progress
    assert (running.chunks_done, running.bytes_done, running.total_bytes) == (5, 250, 1000)
    assert running.eta_s is not None and running.chunks_per_s is not None
    assert run.live().eta_s is not None
    run.status = "succeeded"
    assert run.summary().progress.eta_s is None and run.live().eta_s is None
    assert run.summary().run.finished_at is not None


def test_stage_busy_times_are_derived_for_every_stage_in_flow_order() -> None:
    run = record(stage_busy_s={"read": 0.5, "dense": 2.0, "build": 0.25}, workers=2)
    run.writes.write_ms = 1500.0

    performance = run.summary().performance

    assert performance is not None and performance.workers == 2
    # A stage that did not run (no sparse model) is null; the writer's is its write time.
    assert performance.stage_busy_s == {
        "read": 0.5,
        "dense": 2.0,
        "sparse": None,
        "build": 0.25,
        "write": 1.5,
    }


def test_a_sync_times_each_of_its_stages(sink: Writer, tmp_path: Path) -> None:
    syncer, _ = recorded_run(sink, tmp_path / "state")

    run = syncer.record
    assert run is not None and set(run.stage_busy_s) == {"read", "dense", "sparse", "build"}
    assert all(seconds > 0 for seconds in run.stage_busy_s.values())
    performance = run.summary().performance
    assert performance is not None and (performance.stage_busy_s["write"] or 0) > 0

"""The snapshot: what the state folder and the probe say, without opening Qdrant."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from connector.runs import RunRecord, write_progress, write_summary
from connector.runs.manifest import (
    ProcessInfo,
    ProcessingSummary,
    RunStatus,
)
from connector.settings import Settings
from connector.switches import RuntimeState, save_runtime
from tests.fakes import FakeProbe
from tests.tui.conftest import run_sync
from tests.tui.scripted import ray_run
from tui.state import Collector, RunRow
from tui.stored import StoredRuns


def test_a_real_sync_is_read_back_from_the_state_folder(workdir: Path, settings: Settings) -> None:
    assert run_sync(workdir) == 0
    collector = Collector(settings.state_dir, probe=FakeProbe(0))
    snapshot = collector.snapshot()
    (run,) = snapshot.runs
    assert (run.status, run.chunks, run.encoded, run.schema_version) == ("succeeded", 40, 40, "4.1")
    assert run.fallback_ratio == 0.0 and run.chunks_per_s and run.device == "cpu"
    assert snapshot.progress is not None and snapshot.progress.run_id == run.run_id
    assert not snapshot.live  # that sync has ended
    assert (snapshot.sparse.enabled, snapshot.sparse.decided_by) == (True, "settings")


def test_runs_newest_first_unreadable_manifests_skipped(settings: Settings) -> None:
    runs = settings.state_dir / "runs"
    (runs / "broken").mkdir(parents=True)
    (runs / "broken" / "processing_summary.json").write_text("{not json")
    save_runtime(settings.state_dir, RuntimeState(sparse_enabled=False))
    snapshot = Collector(settings.state_dir, probe=FakeProbe(2)).snapshot()
    assert snapshot.runs == () and len(snapshot.gpus) == 2
    assert (snapshot.sparse.enabled, snapshot.sparse.decided_by) == (False, "switch")


def test_an_unreadable_switch_is_a_problem_not_a_crash(settings: Settings) -> None:
    settings.state_dir.mkdir(parents=True)
    (settings.state_dir / "runtime.json").write_text(json.dumps({"sparse_enabled": "yes"}))
    snapshot = Collector(settings.state_dir, sparse_configured=True, probe=FakeProbe(0)).snapshot()
    assert snapshot.sparse.enabled and snapshot.sparse.decided_by == "settings"
    (problem,) = snapshot.problems
    assert "sparse_enabled must be true or false" in problem


def test_a_running_run_shows_live_progress_and_no_final_counts(
    workdir: Path, settings: Settings
) -> None:
    assert run_sync(workdir) == 0
    state = settings.state_dir
    (manifest,) = (state / "runs").glob("*/processing_summary.json")
    summary = json.loads(manifest.read_text())
    summary["run"]["status"] = "running"  # as the start of a run writes it
    manifest.write_text(json.dumps(summary))
    progress = json.loads((state / "progress.json").read_text())
    progress |= {"status": "running", "chunks_done": 12}
    (state / "progress.json").write_text(json.dumps(progress))

    snapshot = Collector(state, probe=FakeProbe(0), liveness=lambda _: True).snapshot()

    (run,) = snapshot.runs
    assert snapshot.live and (run.status, run.chunks) == ("running", 12)
    assert (run.encoded, run.deleted) == (None, None)  # known at the end of the run only


def test_a_row_is_derived_from_the_manifest_and_a_running_one_from_its_progress() -> None:
    run = RunRecord(run_id="r", source="memory://x", collection="chunks", batch_size=8)
    run.counts.chunks_seen, run.counts.encoded, run.writes.deleted = 6, 4, 1
    run.progress.advance(chunks=6, bytes_read=60)
    row = RunRow.from_summary(run.summary())
    counts = run.totals()
    assert (row.run_id, row.status, row.started_at) == ("r", "running", run.started_at)
    assert [row.chunks, row.encoded, row.deleted] == [
        counts[k] for k in ("chunks_seen", "encoded", "deleted")
    ]
    assert (row.fallback_ratio, row.device) == (None, "none")

    run.progress.advance(chunks=3, bytes_read=90)
    live = run.live()
    later = datetime.fromisoformat(run.started_at) + timedelta(seconds=30)
    updated = row.with_progress(live, later)
    assert (updated.chunks, updated.encoded, updated.deleted) == (9, None, None)
    assert updated.duration_s == 30.0 and updated.chunks_per_s == live.chunks_per_s

    run.status = "succeeded"
    ended = RunRow.from_summary(run.summary())
    assert ended.with_progress(run.live(), later) is ended  # an ended run keeps its manifest's


def test_a_ray_runs_cluster_and_actors_come_from_its_progress_file(settings: Settings) -> None:
    state = settings.state_dir
    state.mkdir(parents=True)
    write_progress(state, ray_run().live())

    live = Collector(state, probe=FakeProbe(0), liveness=lambda _: True).snapshot()
    assert live.compute is not None
    assert (live.compute.engine, live.compute.nodes, live.compute.workers) == ("ray", 2, 3)
    assert [
        (a.node, a.role, a.device, a.batch_size, a.chunks, a.chunks_per_s) for a in live.actors
    ] == [
        ("10.0.0.1 04be", "encode", "cpu", None, 0, None),
        ("10.0.0.2 9f3a", "dense", "cuda:0", 256, 200, 812.5),
        ("10.0.0.2 9f3a", "sparse", "cpu", 32, 100, None),
    ]

    ended = Collector(state, probe=FakeProbe(0), liveness=lambda _: False).snapshot()
    assert ended.progress is not None and ended.progress.actors  # still in the file...
    assert ended.compute is None and ended.actors == ()  # ...but no run is live


def test_a_local_runs_progress_says_local_and_its_workers(settings: Settings) -> None:
    run = RunRecord(run_id="r", source="memory://x", collection="chunks", batch_size=8)
    run.workers = 4
    settings.state_dir.mkdir(parents=True)
    write_progress(settings.state_dir, run.live())
    snapshot = Collector(settings.state_dir, probe=FakeProbe(0), liveness=lambda _: True).snapshot()
    assert snapshot.compute is not None
    assert (snapshot.compute.engine, snapshot.compute.workers, snapshot.actors) == ("local", 4, ())


def summary_of(
    n: int, host: str, status: RunStatus = "succeeded", chunks: int = 10
) -> ProcessingSummary:
    """Run ``n`` (started ``n`` minutes after 10:00) of ``host``."""
    run = RunRecord(
        run_id=f"00000000-0000-4000-8000-{n:012d}",
        source="memory://x",
        collection="chunks",
        batch_size=8,
        started_at=f"2026-03-01T10:{n:02d}:00.000+00:00",
        process=ProcessInfo(host=host, pid=100 + n),
    )
    run.status = status
    run.counts.chunks_seen = chunks
    return run.summary()


def test_the_runs_collection_is_merged_by_run_id_and_its_record_wins(settings: Settings) -> None:
    for n in (1, 3):  # this host's manifests; run 3 ended as the store says only later
        write_summary(
            settings.state_dir, summary_of(n, "here", "running" if n == 3 else "succeeded")
        )
    local = Collector(settings.state_dir, probe=FakeProbe(0)).snapshot()
    assert [(r.run_id[-1], r.host) for r in local.runs] == [("3", "here"), ("1", "here")]

    stored = StoredRuns(
        "http://qdrant:6333",
        50,
        (summary_of(4, "gpu-7"), summary_of(3, "here", chunks=40), summary_of(2, "gpu-8")),
    )
    merged = local.with_stored(stored)

    assert [(r.run_id[-1], r.host, r.status, r.chunks) for r in merged.runs] == [
        ("4", "gpu-7", "succeeded", 10),
        ("3", "here", "succeeded", 40),
        ("2", "gpu-8", "succeeded", 10),
        ("1", "here", "succeeded", 10),
    ]
    assert merged.problems == () and merged.stored is stored
    assert stored.record(local.runs[0].run_id) is stored.summaries[1]
    # Both lists hold the newest runs up to their limit: so does the merge.
    newest = local.with_stored(StoredRuns("x", 1, stored.summaries[:1]))
    assert [r.run_id[-1] for r in newest.runs] == ["4", "3"]


def test_a_runs_collection_that_cannot_be_read_keeps_the_local_history(settings: Settings) -> None:
    write_summary(settings.state_dir, summary_of(1, "here"))
    local = Collector(settings.state_dir, probe=FakeProbe(0)).snapshot()
    merged = local.with_stored(
        StoredRuns("http://qdrant:6333", 50, problem="no answer from Qdrant")
    )
    assert merged.runs == local.runs
    (notice,) = merged.problems
    assert notice == (
        "Run history: this host's manifests only (the runs collection at http://qdrant:6333 "
        "is unreadable: no answer from Qdrant)"
    )


def test_a_running_run_from_the_store_still_counts_from_the_live_progress(
    settings: Settings,
) -> None:
    run = RunRecord(
        run_id="00000000-0000-4000-8000-000000000009", source="m", collection="c", batch_size=8
    )
    run.progress.advance(chunks=7, bytes_read=70)
    settings.state_dir.mkdir(parents=True)
    write_progress(settings.state_dir, run.live())
    collector = Collector(settings.state_dir, probe=FakeProbe(0), liveness=lambda _: True)
    merged = collector.snapshot().with_stored(StoredRuns("http://q:6333", 50, (run.summary(),)))
    (row,) = merged.runs
    assert (row.status, row.chunks, row.encoded) == ("running", 7, None)

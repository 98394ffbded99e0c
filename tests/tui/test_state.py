"""The snapshot: what the state folder and the probe say, without opening Qdrant."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from connector.runs import RunRecord
from connector.settings import Settings
from connector.switches import RuntimeState, save_runtime
from tests.fakes import FakeProbe
from tests.tui.conftest import run_sync
from tui.state import Collector, RunRow


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

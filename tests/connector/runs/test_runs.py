"""Run records: written at start, updated as the run goes, final at the end; dead runs marked."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from connector.errors import ConfigError, SourceError
from connector.pipeline.syncer import Syncer
from connector.runs import (
    RunRecord,
    RunRecorder,
    RunStore,
    mark_dead_runs,
    process_alive,
    this_process,
)
from connector.runs.live import read_progress
from connector.runs.manifest import ProcessInfo, ProcessingSummary, read_summary, summary_path
from connector.store import Store, Writer
from tests.fakes import FakeDense, ListSource, chunk

CORPUS = [chunk(f"c{i}", f"Pressure distribution on wing section number {i}.") for i in range(9)]


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Writer]:
    store = Store(QdrantClient(path=str(tmp_path / "qdrant")))
    yield Writer(store, "chunks", batch_size=2)
    store.close()


@pytest.fixture
def store(sink: Writer) -> RunStore:
    return RunStore(sink.store, "connector_runs")


class WatchedSource(ListSource):
    """Reads, between chunks, what another process would see of the run."""

    def __init__(self, chunks, look, fail_after: int | None = None, stop_after=None) -> None:
        super().__init__(chunks)
        self.look = look
        self.fail_after = fail_after
        self.stop_after = stop_after

    def __iter__(self):
        for index, item in enumerate(super().__iter__()):
            self.look(index)
            if index == self.fail_after:
                raise SourceError(f"memory://test:{index + 1}", "invalid JSON: Expecting value")
            if index == self.stop_after:
                raise KeyboardInterrupt
            yield item


def _acknowledged_at_once(sink: Writer):
    """The sink's submit, waiting for Qdrant: counts are then exact when a batch ends."""
    submit = sink.submit

    def submit_and_wait(batch) -> None:
        submit(batch)
        sink.flush()

    return submit_and_wait


def recorder_for(syncer: Syncer, tmp_path: Path, store: RunStore) -> RunRecorder:
    return RunRecorder(
        syncer, "memory://test", tmp_path / "state", store, record_every_s=0, file_every_s=0
    )


def test_a_run_is_recorded_running_with_progress_then_succeeded(
    sink: Writer, store: RunStore, tmp_path: Path
) -> None:
    sink.submit = _acknowledged_at_once(sink)  # type: ignore[method-assign]
    # In turn: the source is read only once the window before was written, which pins what the
    # record shows at each chunk read (the overlapped run is checked below).
    syncer = Syncer(sink, [FakeDense()], batch_size=3, overlap=False)
    recorder = recorder_for(syncer, tmp_path, store)
    seen: list[tuple[str, int, str, int]] = []
    upserted: list[int] = []

    def look(index: int) -> None:
        record = store.get(recorder.run_id)
        live = read_progress(tmp_path / "state")
        assert record is not None and live is not None
        seen.append((record.run.status, record.progress.chunks_done, live.status, live.chunks_done))
        upserted.append(record.counts["upserted"])

    with recorder:
        report = syncer.run(WatchedSource(CORPUS, look), run_id=recorder.run_id)

    assert seen[0] == ("running", 0, "running", 0)
    assert seen[3] == ("running", 3, "running", 3)  # after the first batch of 3
    assert seen[-1] == ("running", 6, "running", 6)
    # Acknowledged writes show while the run goes.
    assert upserted == [0, 0, 0, 3, 3, 3, 6, 6, 6]
    final = store.get(recorder.run_id)
    assert final is not None and final.run.status == "succeeded" and final.run.reason is None
    assert final.run.finished_at is not None and final.progress.chunks_done == 9
    assert final.counts["upserted"] == report.writes.upserted == 9
    assert final.run.process == this_process()
    on_disk = read_summary(summary_path(tmp_path / "state", recorder.run_id))
    assert on_disk == final
    live = read_progress(tmp_path / "state")
    assert live is not None and live.status == "succeeded" and not live.is_live()
    assert live.batch_size == 3 and live.chunks_done == 9 and live.pid == os.getpid()


def test_an_overlapped_run_shows_its_progress_and_writes_while_it_goes(
    sink: Writer, store: RunStore, tmp_path: Path
) -> None:
    sink.submit = _acknowledged_at_once(sink)  # type: ignore[method-assign]
    corpus = [chunk(f"c{i}", f"Pressure on wing section number {i}.") for i in range(60)]
    syncer = Syncer(sink, [FakeDense()], batch_size=3)
    recorder = recorder_for(syncer, tmp_path, store)
    seen: list[tuple[int, int, int]] = []

    def look(index: int) -> None:
        record = store.get(recorder.run_id)
        live = read_progress(tmp_path / "state")
        assert record is not None and live is not None and record.run.status == "running"
        seen.append((record.progress.chunks_done, live.chunks_done, record.counts["upserted"]))

    with recorder:
        report = syncer.run(WatchedSource(corpus, look), run_id=recorder.run_id)

    # The source reads ahead of the writes by a few windows at most (the queues are bounded),
    # and progress and acknowledged writes go up a whole window at a time while it reads.
    assert seen[0] == (0, 0, 0)
    assert all(done % 3 == 0 and upserted % 3 == 0 for done, _, upserted in seen)
    assert [s[0] for s in seen] == sorted(s[0] for s in seen)
    assert max(index - done for index, (done, _, _) in enumerate(seen)) <= 8 * 3
    assert seen[-1][0] >= 30 and seen[-1][2] >= 30
    final = store.get(recorder.run_id)
    assert final is not None and final.run.status == "succeeded"
    assert final.progress.chunks_done == report.writes.upserted == 60


def test_a_failing_run_is_recorded_failed_with_the_reason(
    sink: Writer, store: RunStore, tmp_path: Path
) -> None:
    syncer = Syncer(sink, [FakeDense()], batch_size=2)
    recorder = recorder_for(syncer, tmp_path, store)
    with pytest.raises(SourceError), recorder:
        syncer.run(WatchedSource(CORPUS, lambda i: None, fail_after=5), run_id=recorder.run_id)
    record = store.get(recorder.run_id)
    assert record is not None and record.run.status == "failed"
    assert record.run.reason == ("SourceError: memory://test:6: invalid JSON: Expecting value")
    assert record.counts["upserted"] == 4  # the batches acknowledged before the failure
    assert read_summary(summary_path(tmp_path / "state", recorder.run_id)) == record
    live = read_progress(tmp_path / "state")
    assert live is not None and live.status == "failed"


def test_ctrl_c_is_recorded_interrupted(sink: Writer, store: RunStore, tmp_path: Path) -> None:
    syncer = Syncer(sink, [FakeDense()], batch_size=2)
    recorder = recorder_for(syncer, tmp_path, store)
    with pytest.raises(KeyboardInterrupt), recorder:
        syncer.run(WatchedSource(CORPUS, lambda i: None, stop_after=3), run_id=recorder.run_id)
    record = store.get(recorder.run_id)
    assert record is not None and record.run.status == "interrupted"
    assert record.run.reason == "interrupted (Ctrl-C)"


def test_a_failure_before_the_run_starts_is_still_recorded(
    sink: Writer, store: RunStore, tmp_path: Path
) -> None:
    syncer = Syncer(sink, [FakeDense()])
    recorder = recorder_for(syncer, tmp_path, store)
    with pytest.raises(ConfigError), recorder:
        raise ConfigError("sync.batch_size: must be at least 1")
    record = store.get(recorder.run_id)
    assert record is not None and record.run.status == "failed"
    assert record.run.reason == "ConfigError: sync.batch_size: must be at least 1"


def dead_pid() -> ProcessInfo:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return ProcessInfo(host=socket.gethostname(), pid=child.pid, start_ticks=None)


def running(run_id: str, process: ProcessInfo) -> ProcessingSummary:
    record = RunRecord(
        run_id=run_id,
        source="memory://x",
        collection="chunks",
        batch_size=256,
        started_at="2025-01-01T00:00:00.000+00:00",
        process=process,
    )
    return record.summary()


def test_dead_runs_are_marked_interrupted_and_live_ones_left_alone(
    store: RunStore, tmp_path: Path
) -> None:
    store.ensure()
    me = this_process()
    ids = {
        "dead": "00000000-0000-4000-8000-000000000001",
        "alive": "00000000-0000-4000-8000-000000000002",
        "elsewhere": "00000000-0000-4000-8000-000000000003",
        "reused": "00000000-0000-4000-8000-000000000004",
    }
    store.put(running(ids["dead"], dead_pid()))
    store.put(running(ids["alive"], me))
    store.put(running(ids["elsewhere"], ProcessInfo(host="another-host", pid=me.pid)))
    reused = me.model_copy(update={"start_ticks": (me.start_ticks or 0) + 1})
    store.put(running(ids["reused"], reused))

    marked = mark_dead_runs(store, tmp_path, noticed_by="11111111-1111-4111-8111-111111111111")

    expected = {ids["dead"]} | ({ids["reused"]} if me.start_ticks is not None else set())
    assert set(marked) == expected
    for name, run_id in ids.items():
        record = store.get(run_id)
        assert record is not None
        assert record.run.status == ("interrupted" if run_id in expected else "running"), name
    dead = store.get(ids["dead"])
    assert dead is not None and "ended without finishing" in (dead.run.reason or "")
    assert dead.run.finished_at == dead.run.updated_at
    assert mark_dead_runs(store, tmp_path, noticed_by="x") == []


def test_liveness_of_this_and_of_a_finished_process() -> None:
    assert process_alive(this_process()) is True
    assert process_alive(dead_pid()) is False
    assert process_alive(ProcessInfo(host="another-host", pid=1)) is None


def test_latest_lists_newest_first_and_get_checks_the_id(store: RunStore) -> None:
    assert store.latest() == [] and store.get("00000000-0000-4000-8000-000000000009") is None
    store.ensure()
    for second in (3, 1, 2):
        summary = running(f"00000000-0000-4000-8000-00000000000{second}", this_process())
        summary.run.started_at = f"2025-01-01T00:00:0{second}.000+00:00"
        store.put(summary)
    assert [s.run.started_at[18] for s in store.latest()] == ["3", "2", "1"]
    assert len(store.latest(limit=2)) == 2
    with pytest.raises(ConfigError, match="not a run id"):
        store.get("../../etc/passwd")


def test_progress_file_is_replaced_whole_and_unreadable_means_none(tmp_path: Path) -> None:
    from connector.runs.live import LiveProgress, write_progress

    assert read_progress(tmp_path) is None
    (tmp_path / "progress.json").write_text("{not json")
    assert read_progress(tmp_path) is None
    snapshot = LiveProgress(
        run_id="r",
        status="running",
        collection="chunks",
        source="s",
        started_at="t",
        updated_at="t",
        chunks_done=5,
        batch_size=256,
        process=dead_pid(),
    )
    write_progress(tmp_path, snapshot)
    assert read_progress(tmp_path) == snapshot
    assert not snapshot.is_live()  # its process is gone: a dashboard shows it as dead
    assert sorted(p.name for p in tmp_path.iterdir()) == ["progress.json"]
    assert json.loads((tmp_path / "progress.json").read_text())["chunks_done"] == 5

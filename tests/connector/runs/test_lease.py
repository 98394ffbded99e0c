"""The sync lease: one sync of a (collection, source) at a time, across hosts; a dead holder's
lease lapses, and a run that lost its lease deletes nothing."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from connector.errors import ConfigError, SyncInProgress
from connector.runs import RunStore, SyncLease, mark_dead_runs, this_process
from connector.runs.manifest import ProcessInfo
from connector.settings import load_settings
from connector.store import Store
from connector.wiring import build_syncer, open_store
from tests.cli import run
from tests.connector.runs.test_runs import dead_pid, running
from tests.connector.store.servers import ServerLike
from tests.fakes import FakeDense, ListSource, chunk

RUNS = "connector_runs"
SOURCE = "memory://test"
RUN_A = "aaaaaaaa-0000-4000-8000-000000000001"
RUN_B = "bbbbbbbb-0000-4000-8000-000000000002"
HOST_A = ProcessInfo(host="host-a.example", pid=101, start_ticks=7)
HOST_B = ProcessInfo(host="host-b.example", pid=202)
CHUNKS = [chunk(f"c{i}", f"lift and drag of wing section {i}") for i in range(20)]


@pytest.fixture
def runs() -> Iterator[RunStore]:
    store = Store(QdrantClient(":memory:"))
    yield RunStore(store, RUNS)
    store.close()


def lease(runs: RunStore, run_id: str, process: ProcessInfo, **options: Any) -> SyncLease:
    options.setdefault("settle_s", 0)
    return SyncLease(runs, "chunks", SOURCE, run_id, process=process, **options)


def claim(runs: RunStore, point_id: str, run_id: str, process: ProcessInfo, expires_in: float):
    """Another host's claim as it stores it, written over whatever is there."""
    now = datetime.now(UTC)
    payload = {
        "kind": "sync_lease",
        "collection": "chunks",
        "source": SOURCE,
        "holder": {**process.model_dump(), "run_id": run_id},
        "since": (now - timedelta(minutes=5)).isoformat(timespec="milliseconds"),
        "heartbeat_at": now.isoformat(timespec="milliseconds"),
        "expires_at": (now + timedelta(seconds=expires_in)).isoformat(timespec="milliseconds"),
    }
    runs.ensure()
    runs.store.upsert(RUNS, [qm.PointStruct(id=point_id, vector={}, payload=payload)])


def holder(taken: SyncLease) -> str | None:
    current = taken.read()
    return None if current is None else current["holder"]["run_id"]


# -- taking ------------------------------------------------------------------------------------


def test_a_second_holder_fails_with_one_line_naming_the_first(runs: RunStore) -> None:
    first = lease(runs, RUN_A, HOST_A)
    with first:
        stored = first.read()
        assert stored is not None
        assert stored["kind"] == "sync_lease"
        assert (stored["collection"], stored["source"]) == ("chunks", SOURCE)
        assert stored["holder"] == {
            "host": "host-a.example",
            "pid": 101,
            "start_ticks": 7,
            "run_id": RUN_A,
        }
        assert stored["heartbeat_at"] == stored["since"]
        expires = datetime.fromisoformat(stored["expires_at"])
        assert expires - datetime.fromisoformat(stored["since"]) == timedelta(seconds=60)

        second = lease(runs, RUN_B, HOST_B)
        with pytest.raises(SyncInProgress) as info:
            second.take()
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"source {SOURCE} into collection chunks is being synced by")
        assert f"run {RUN_A} (pid 101 on host host-a.example) since {stored['since']}" in message
        assert f"expires at {stored['expires_at']}" in message
        assert holder(first) == RUN_A  # the loser wrote nothing
        second.release()  # never taken: nothing to give back
        assert holder(first) == RUN_A

        # Another source, or another collection, is another lease.
        with SyncLease(runs, "chunks", "memory://other", RUN_B, process=HOST_B, settle_s=0):
            pass
        with SyncLease(runs, "docs", SOURCE, RUN_B, process=HOST_B, settle_s=0):
            pass
    with lease(runs, RUN_B, HOST_B) as second:
        assert holder(second) == RUN_B


def test_the_lease_id_is_the_same_on_every_host_and_differs_by_source(runs: RunStore) -> None:
    one = lease(runs, RUN_A, HOST_A)
    assert one.id == lease(runs, RUN_B, HOST_B).id
    assert one.id != SyncLease(runs, "chunks", "memory://other", RUN_A, process=HOST_A).id
    assert one.id != SyncLease(runs, "docs", SOURCE, RUN_A, process=HOST_A).id


def test_a_lapsed_lease_is_taken_over(runs: RunStore) -> None:
    mine = lease(runs, RUN_B, HOST_B)
    claim(runs, mine.id, RUN_A, HOST_A, expires_in=-1)
    with mine:
        assert holder(mine) == RUN_B


def test_an_unreadable_lease_is_taken_over(runs: RunStore) -> None:
    mine = lease(runs, RUN_B, HOST_B)
    runs.ensure()
    runs.store.upsert(RUNS, [qm.PointStruct(id=mine.id, vector={}, payload={"kind": "x"})])
    with mine:
        assert holder(mine) == RUN_B


def test_a_dead_process_of_this_host_lets_go_at_once_a_live_one_does_not(
    runs: RunStore,
) -> None:
    mine = lease(runs, RUN_B, HOST_B)
    claim(runs, mine.id, RUN_A, dead_pid(), expires_in=3600)
    with mine:
        assert holder(mine) == RUN_B

    claim(runs, mine.id, RUN_A, this_process(), expires_in=3600)  # alive: this very process
    with pytest.raises(SyncInProgress, match=f"pid {os.getpid()} on host {socket.gethostname()}"):
        mine.take()
    # Another host's process cannot be checked from here: its lease holds until it lapses.
    claim(runs, mine.id, RUN_A, ProcessInfo(host="host-a.example", pid=1), expires_in=3600)
    with pytest.raises(SyncInProgress, match="host-a.example"):
        mine.take()


def test_the_same_run_takes_its_own_lease_again(runs: RunStore) -> None:
    mine = lease(runs, RUN_A, HOST_A)
    claim(runs, mine.id, RUN_A, HOST_A, expires_in=3600)
    with mine:
        assert holder(mine) == RUN_A


class Crossing:
    """A client on which another host's claim lands right after each claim this host writes
    (two claims that cross: the other one is the later)."""

    def __init__(self, other: dict[str, Any] | None) -> None:
        self.inner = QdrantClient(":memory:")
        self.other = other

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upsert(self, name: str, points: list[qm.PointStruct], **kwargs: Any) -> Any:
        kwargs.pop("ordering", None)
        done = self.inner.upsert(name, points, **kwargs)
        if self.other is not None:
            later = qm.PointStruct(id=points[0].id, vector={}, payload=self.other)
            self.inner.upsert(name, [later], **kwargs)
        return done


def test_of_two_claims_that_cross_the_later_wins() -> None:
    other = {"kind": "sync_lease", "holder": {**HOST_A.model_dump(), "run_id": RUN_A}}
    other |= {"since": "2030-01-01T00:00:00.000+00:00", "expires_at": "2030-01-01T00:01:00+00:00"}
    store = Store(Crossing(other))  # type: ignore[arg-type]
    runs = RunStore(store, RUNS)
    mine = lease(runs, RUN_B, HOST_B, settle_s=0.01)
    with pytest.raises(SyncInProgress, match=f"run {RUN_A} .pid 101 on host host-a.example"):
        mine.take()
    assert holder(mine) == RUN_A
    store.close()


# -- holding -----------------------------------------------------------------------------------


def test_the_heartbeat_moves_the_expiry_forward(runs: RunStore) -> None:
    with lease(runs, RUN_A, HOST_A, ttl_s=0.3) as mine:
        first = mine.read()
        assert first is not None
        deadline = time.monotonic() + 10
        while (now := mine.read()) == first:
            assert time.monotonic() < deadline, "never renewed"
            time.sleep(0.02)
        assert now is not None and now["since"] == first["since"]
        assert now["expires_at"] > first["expires_at"]
        assert now["heartbeat_at"] > first["heartbeat_at"]
        time.sleep(0.5)  # past the first expiry: still held, still renewed
        with pytest.raises(SyncInProgress):
            lease(runs, RUN_B, HOST_B).take()
        mine.check()


def test_release_deletes_its_own_lease_only(runs: RunStore) -> None:
    with lease(runs, RUN_A, HOST_A) as mine:
        pass
    assert mine.read() is None
    with lease(runs, RUN_A, HOST_A) as mine:
        claim(runs, mine.id, RUN_B, HOST_B, expires_in=3600)  # mine lapsed, and B took it
    assert holder(mine) == RUN_B


def test_a_lease_lost_to_another_run_fails_the_check(runs: RunStore) -> None:
    # Found by the heartbeat, which then stops renewing (it would overwrite the other's claim).
    with lease(runs, RUN_A, HOST_A, ttl_s=0.15) as mine:
        for _ in range(3):  # a renewal that read the lease just before the claim overwrites it
            claim(runs, mine.id, RUN_B, HOST_B, expires_in=3600)
            time.sleep(0.3)
            if holder(mine) == RUN_B:
                break
        assert holder(mine) == RUN_B
        with pytest.raises(SyncInProgress) as info:
            mine.check()
        assert f"run {RUN_A} lost its sync lease" in str(info.value)
        assert f"run {RUN_B} (pid 202 on host host-b.example)" in str(info.value)
    runs.store.delete(RUNS, [mine.id])
    # Found by the check itself, between two heartbeats.
    with lease(runs, RUN_A, HOST_A) as mine:
        mine.check()
        runs.store.delete(RUNS, [mine.id])
        with pytest.raises(SyncInProgress, match="another run took it and let it go"):
            mine.check()


# -- never a run -------------------------------------------------------------------------------


def test_no_reader_of_the_runs_collection_takes_the_lease_for_a_run(
    runs: RunStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs.ensure()
    runs.put(running(RUN_B, dead_pid()))
    with lease(runs, RUN_A, this_process()) as mine:
        assert [s.run.id for s in runs.latest()] == [RUN_B]
        assert [s.run.id for s in runs.running()] == [RUN_B]
        assert runs.get(mine.id) is None and runs.payload(mine.id) is None
        assert mark_dead_runs(runs, tmp_path, noticed_by=RUN_A) == [RUN_B]
        assert holder(mine) == RUN_A
    assert "not a manifest" not in caplog.text


# -- a sync ------------------------------------------------------------------------------------


class Overtaken(ListSource):
    """A source whose read ends after another host took the sync's lease over."""

    def __init__(self, chunks: list[Any], take_over: Any) -> None:
        super().__init__(chunks)
        self.take_over = take_over

    def __iter__(self) -> Iterator[Any]:
        yield from super().__iter__()
        self.take_over()


def test_a_sync_that_lost_its_lease_deletes_nothing(tmp_path: Path) -> None:
    settings = load_settings(None, {"state_dir": str(tmp_path / "state")})
    client = QdrantClient(":memory:")
    with build_syncer(
        settings, source=ListSource(CHUNKS), dense=[FakeDense()], client=client, sparse=False
    ) as job:
        assert job.run().counts.chunks_seen == len(CHUNKS)
        runs = RunStore(job.store, RUNS)
        point = SyncLease(runs, "chunks", SOURCE, RUN_B).id
        assert runs.store.retrieve(RUNS, [point], with_payload=True) == []  # released

        job.source = Overtaken(
            CHUNKS[:-3], lambda: claim(runs, point, RUN_B, HOST_B, expires_in=3600)
        )
        with pytest.raises(SyncInProgress, match=f"lost its sync lease.*run {RUN_B}"):
            job.run()
        record = job.syncer.record
        assert record is not None and record.status == "failed"
        assert record.writes.deleted == 0 and job.store.count("chunks") == len(CHUNKS)
        assert "SyncInProgress" in (record.reason or "")
        recorded = runs.get(record.run_id)
        assert recorded is not None and recorded.run.status == "failed"
        assert job.syncer.guard is None
        # The other run's lease stays; once it is gone, the next run deletes what disappeared.
        assert (runs.store.retrieve(RUNS, [point], with_payload=True)[0].payload or {})["holder"][
            "run_id"
        ] == RUN_B
        runs.store.delete(RUNS, [point])
        job.source = ListSource(CHUNKS[:-3])
        assert job.run().writes.deleted == 3


def test_a_sync_finds_the_source_held_and_is_no_run(tmp_path: Path) -> None:
    settings = load_settings(None, {"state_dir": str(tmp_path / "state")})
    with build_syncer(
        settings,
        source=ListSource(CHUNKS),
        dense=[FakeDense()],
        client=QdrantClient(":memory:"),
        sparse=False,
    ) as job:
        runs = RunStore(job.store, RUNS)
        point = SyncLease(runs, "chunks", SOURCE, RUN_B).id
        claim(runs, point, RUN_B, HOST_B, expires_in=3600)
        with pytest.raises(SyncInProgress, match="host-b.example"):
            job.run()
        assert runs.latest() == [] and job.store.count("chunks") == 0
        assert not (tmp_path / "state" / "runs").exists()


class Recording(ServerLike):
    """A server stand-in that also records each write's collection and what it wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, str, Any]] = []
        self.reads: list[tuple[str, list[Any]]] = []

    def _write(self, method: str, name: str, what: Any, **kwargs: Any) -> Any:
        self.writes.append((method, name, what))
        return super()._write(method, name, what, **kwargs)

    def retrieve(self, name: str, ids: list[Any], **kwargs: Any) -> Any:
        self.reads.append((name, list(ids)))
        return self.inner.retrieve(name, ids, **kwargs)


def test_a_sync_against_a_server_holds_the_lease_in_the_runs_collection(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        {
            "state_dir": str(tmp_path / "state"),
            "qdrant": {"url": "http://qdrant-0.cluster:6333"},
            "sync": {"lease_settle_s": 0.01},
        },
    )
    client = Recording()
    job = build_syncer(
        settings,
        source=ListSource(CHUNKS),
        dense=[FakeDense()],
        client=client,  # type: ignore[arg-type]
        sparse=False,
    )
    with job:
        record = job.run()
        point = SyncLease(RunStore(job.store, RUNS), "chunks", SOURCE, RUN_A).id
        assert client.inner.retrieve(RUNS, [point]) == []
    on_lease = [(m, w) for m, name, w in client.writes if name == RUNS and _names(w, point)]
    assert [m for m, _ in on_lease] == ["upsert", "delete"]
    claimed = on_lease[0][1][0].payload
    assert claimed["kind"] == "sync_lease" and claimed["holder"]["run_id"] == record.run_id
    assert claimed["holder"]["host"] == socket.gethostname()
    assert claimed["holder"]["pid"] == os.getpid()
    # Read before the claim, read back after the settle, and before the release (the run had
    # nothing to delete: no check).
    assert client.reads.count((RUNS, [point])) == 3
    # The claim came before the run's first record, the release after its last.
    runs_writes = [what for m, name, what in client.writes if name == RUNS and m == "upsert"]
    assert _names(runs_writes[0], point) and not _names(runs_writes[-1], point)
    last = [i for i, (m, name, _) in enumerate(client.writes) if name == RUNS]
    assert client.writes[last[-1]][0] == "delete"


def _names(what: Any, point: str) -> bool:
    """Whether a write request (points, or an id selector) is about ``point``."""
    if isinstance(what, qm.PointIdsList):
        return [str(p) for p in what.points] == [point]
    return [str(p.id) for p in what] == [point]


# -- settings and the command ------------------------------------------------------------------


def test_lease_settings_defaults_environment_and_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CONNECTOR_"):
            monkeypatch.delenv(name)
    sync = load_settings().sync
    assert (sync.lease_ttl_s, sync.lease_settle_s) == (60.0, 0.5)
    monkeypatch.setenv("CONNECTOR_SYNC__LEASE_TTL_S", "5")
    assert load_settings(None, {"sync": {"lease_settle_s": 0}}).sync.lease_ttl_s == 5.0
    for key, bad in [("lease_ttl_s", 0), ("lease_ttl_s", -1), ("lease_settle_s", -0.1)]:
        with pytest.raises(ConfigError, match=rf"sync\.{key}"):
            load_settings(None, {"sync": {key: bad}})


def test_connector_sync_of_a_held_source_prints_the_holder_and_fails(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "connector.toml").write_text(
        '[dense]\nmodels = [{ encoder = "connector.dense_plugins:RateEncoder", name = "vec" }]\n'
    )
    argv = ["sync", "--source", "corpus.jsonl", "--source-name", "papers", "--disable-sparse"]
    settings = load_settings()
    store = open_store(settings)
    runs = RunStore(store, RUNS)
    point = SyncLease(runs, "chunks", "papers", RUN_B).id
    claim(runs, point, RUN_B, HOST_B, expires_in=3600)
    store.close()

    code, out, err = run(capsys, *argv)
    assert code == 1 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("connector: error: source papers into collection chunks is being")
    assert f"run {RUN_B} (pid 202 on host host-b.example) since " in line
    code, out, _ = run(capsys, "runs", "--json")
    assert code == 0 and json.loads(out) == []

    store = open_store(settings)
    store.delete(RUNS, [point])
    store.close()
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    code, out, _ = run(capsys, "runs", "--json")
    assert [r["run"]["status"] for r in json.loads(out)] == ["succeeded"]

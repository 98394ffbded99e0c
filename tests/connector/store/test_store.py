"""The gateway on both embedded engines: its requests, its retries and counts, and the one way a
chunk collection is created (a first library sync makes what `connector sync` makes)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from connector.errors import SinkUnavailable
from connector.pipeline.syncer import SparseTarget, Syncer
from connector.sparse.generator import SparseVectorGenerator
from connector.store import (
    CollectionLayout,
    PointWrite,
    Store,
    WriteBatch,
    WriteCounts,
    Writer,
    create_runs_collection,
)
from connector.store.edge import EdgeClient
from connector.store.migrator import Migrator, discover
from tests.fakes import FakeDense, ListSource, chunk
from tests.faults import FaultyClient, timeout

CORPUS = [chunk(f"c{i}", f"Pressure on wing section {i} at incidence {i}.") for i in range(7)]
INDEXES = {"source", "content_hash", "chunk_id"}


def open_client(path: Path, engine: str) -> FaultyClient:
    inner = QdrantClient(path=str(path)) if engine == "local" else EdgeClient(path)
    return FaultyClient(inner)  # type: ignore[arg-type]


@pytest.fixture(params=["local", "edge"])
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def client(tmp_path: Path, engine: str):
    client = open_client(tmp_path / "qdrant", engine)
    yield client
    client.inner.close()


@pytest.fixture
def store(client: FaultyClient) -> Store:
    return Store(client, retries=2, sleep=lambda _: None)  # type: ignore[arg-type]


def bm25() -> SparseTarget:
    return SparseTarget(SparseVectorGenerator(), "qdrant-bm25", "qdrant-bm25", idf=True)


def indexed(client: FaultyClient, collection: str) -> set[str]:
    """The payload keys indexed on ``collection``, as the client was asked."""
    return {
        args[1]
        for name, args in client.requests
        if name == "create_payload_index" and args[0] == collection
    }


def pid(n: int) -> str:
    return str(uuid.UUID(int=n))


def point(n: int) -> qm.PointStruct:
    return qm.PointStruct(id=pid(n), vector={"v": [1.0, float(n)]}, payload={"n": n})


def plain_point(n: int) -> PointWrite:
    """:func:`point` as a sync's writer takes it."""
    return PointWrite(pid(n), {"v": [1.0, float(n)]}, {"n": n})


def test_a_first_library_sync_makes_what_connector_sync_makes(tmp_path: Path, engine: str) -> None:
    # The library path: a syncer on a store where nothing exists yet.
    library = open_client(tmp_path / "library", engine)
    store = Store(library)  # type: ignore[arg-type]
    Syncer(Writer(store, "chunks"), [FakeDense()], bm25()).run(ListSource(CORPUS))

    # `connector sync`: the migrator prepares the collection, then the same sync.
    command = open_client(tmp_path / "command", engine)
    reference = Store(command)  # type: ignore[arg-type]
    layout = CollectionLayout(dense={"fake": 16}, sparse={"qdrant-bm25": True})
    Migrator(reference, "chunks", layout, "connector_runs").prepare_for_sync()
    Syncer(Writer(reference, "chunks"), [FakeDense()], bm25()).run(ListSource(CORPUS))

    ids = [m.id for m in discover()]
    for made, client in ((store, library), (reference, command)):
        assert made.aliases() == {"chunks": "chunks__1"}
        assert INDEXES <= indexed(client, "chunks__1")
        assert made.exists("connector_runs")
        status = Migrator(made, "chunks", layout, "connector_runs").status()
        assert list(status.applied) == ids and status.pending == []
        assert made.count("chunks") == len(CORPUS)
    ours, theirs = store.info("chunks__1").config, reference.info("chunks__1").config
    assert ours.params.vectors == theirs.params.vectors
    assert ours.params.sparse_vectors == theirs.params.sparse_vectors
    assert ours.metadata["connector"] == theirs.metadata["connector"]

    # A later `connector sync` takes it as it is: nothing pending, nothing refused.
    assert Migrator(store, "chunks", layout, "connector_runs").prepare_for_sync() == []
    report = Syncer(Writer(store, "chunks"), [FakeDense()], bm25()).run(ListSource(CORPUS))
    assert report.counts.skipped_unchanged == len(CORPUS)
    store.close()
    reference.close()


def test_a_sync_without_sparse_gets_the_alias_and_the_schema_record_too(store: Store) -> None:
    Syncer(Writer(store, "chunks"), [FakeDense()]).run(ListSource(CORPUS))
    assert store.aliases() == {"chunks": "chunks__1"}
    assert not store.info("chunks").config.params.sparse_vectors
    layout = CollectionLayout(dense={"fake": 16}, sparse={"qdrant-bm25": True})
    assert Migrator(store, "chunks", layout, "connector_runs").prepare_for_sync() == []
    # Sparse switched on later: the next sync adds the vector in place.
    report = Syncer(Writer(store, "chunks"), [FakeDense()], bm25()).run(ListSource(CORPUS))
    assert report.writes.vectors_updated == len(CORPUS)
    assert set(store.info("chunks").config.params.sparse_vectors or {}) == {"qdrant-bm25"}


def test_collections_aliases_and_points_through_the_gateway(
    store: Store, client: FaultyClient
) -> None:
    assert store.metadata("chunks") == {} and store.physical_name("chunks") == "chunks"
    for name in ("one", "two"):
        store.create_collection(
            name, {"v": qm.VectorParams(size=2, distance=qm.Distance.COSINE)}, metadata={"k": name}
        )
    store.set_alias("chunks", "one")
    assert store.physical_name("chunks") == "one" and store.metadata("chunks") == {"k": "one"}
    store.set_alias("chunks", "two", replace=True)
    # The move is one request: readers of the alias never find it missing.
    assert client.calls["update_collection_aliases"] == 2
    assert store.aliases() == {"chunks": "two"}

    store.upsert("chunks", [point(n) for n in range(1, 8)])
    pages = list(store.pages("chunks", page=3))
    assert [len(p) for p in pages] == [3, 3, 1] and store.count("two") == 7
    store.overwrite_payloads("chunks", [(pid(1), {"n": 10}), (pid(2), {"m": 2})])
    store.update_vectors("chunks", [qm.PointVectors(id=pid(3), vector={"v": [0.0, 1.0]})])
    store.delete("chunks", [pid(4), pid(5)])
    found = store.retrieve("chunks", [pid(1), pid(2), pid(4)], with_payload=True)
    assert {r.id: r.payload for r in found} == {pid(1): {"n": 10}, pid(2): {"m": 2}}
    hits = store.query("chunks", [0.0, 1.0], using="v", limit=1)
    assert hits[0].id == pid(3)

    store.update_metadata("two", {"extra": True})
    assert store.metadata("chunks") == {"k": "two", "extra": True}
    store.drop_collection("one")
    assert not store.exists("one") and store.exists("chunks")


def test_the_runs_collection_is_created_once_with_its_indexes(
    store: Store, client: FaultyClient
) -> None:
    create_runs_collection(store, "connector_runs")
    create_runs_collection(store, "connector_runs")
    assert client.calls["create_collection"] == 1
    assert indexed(client, "connector_runs") == {"run.status", "run.started_at"}
    assert not store.info("connector_runs").config.params.vectors


def test_a_run_counts_its_acknowledged_writes_and_every_retry(
    store: Store, client: FaultyClient
) -> None:
    writer = Writer(store, "chunks", batch_size=2)
    counts = WriteCounts()
    writer.begin(counts)
    writer.ensure_collection(CollectionLayout(dense={"v": 2}))
    client.fail("retrieve", timeout())
    client.fail("upsert", timeout(applied=True))
    assert writer.fetch_state([pid(1)]) == {}
    writer.submit(WriteBatch(upserts=[plain_point(n) for n in range(1, 6)]))
    writer.flush()
    # Counted once per acknowledged write, however many times it was sent; the read's retry too.
    assert (counts.upserted, counts.requests, counts.retries) == (5, 3, 2)
    assert writer.counts is counts and store.counts is counts
    assert store.count("chunks") == 5

    # The next run starts from zero, in its own counts.
    fresh = WriteCounts()
    writer.begin(fresh)
    writer.delete([pid(1), pid(2), pid(3)])
    assert (fresh.deleted, fresh.retries, counts.deleted) == (3, 0, 0)


def test_a_health_check_asks_once_without_retrying(store: Store, client: FaultyClient) -> None:
    store.ping()
    client.fail("get_collections", timeout())
    with pytest.raises(SinkUnavailable, match="reach Qdrant at here: no answer from Qdrant"):
        store.ping("reach Qdrant at here")
    assert client.calls["get_collections"] == 2 and store.counts.retries == 0


def test_a_first_sync_of_a_source_reads_no_point_state_a_second_one_does(
    store: Store, client: FaultyClient
) -> None:
    writer = Writer(store, "chunks", batch_size=2)
    Syncer(writer, [FakeDense()], bm25(), batch_size=2).run(ListSource(CORPUS))
    assert client.calls["retrieve"] == 0  # no point of the source existed: none to compare
    again = Syncer(writer, [FakeDense()], bm25(), batch_size=2).run(ListSource(CORPUS))
    assert client.calls["retrieve"] > 0
    assert again.counts.skipped_unchanged == len(CORPUS)

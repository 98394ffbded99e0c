"""``qdrant.cluster``: shards, replicas and write acknowledgement of the collections the connector
creates on a server, and the ordering of every write, as the requests the client is sent."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import models as qm

from connector.errors import ConfigError
from connector.pipeline.syncer import SparseTarget, Syncer
from connector.settings import ClusterSettings, IndexSettings, load_settings
from connector.sparse.generator import SparseVectorGenerator
from connector.store import CollectionLayout, Store, Writer
from connector.store._points import PointWrite
from connector.store._rebuild import rebuild_collection
from connector.wiring import chunk_writer, open_store
from tests.connector.store.servers import ServerLike
from tests.fakes import FakeDense, ListSource, chunk

SERVER = "http://qdrant-0.cluster:6333"
WRITES = ("upsert", "update_vectors", "batch_update_points", "delete")
CHUNKS = [
    chunk(f"c{i}", f"text number {i} about wing flutter and shells {i % 7}") for i in range(40)
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("CONNECTOR_"):
            monkeypatch.delenv(name)


def bm25() -> SparseTarget:
    return SparseTarget(SparseVectorGenerator(), "qdrant-bm25", "qdrant-bm25", idf=True)


def created(client: ServerLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """The creation requests of the chunk collection and of the runs collection."""
    chunks = [kw for kw in client.requests("create_collection") if kw["vectors_config"]]
    runs = [kw for kw in client.requests("create_collection") if not kw["vectors_config"]]
    assert len(chunks) == len(runs) == 1
    return chunks[0], runs[0]


# -- settings ----------------------------------------------------------------------------------


def test_unset_means_the_servers_defaults() -> None:
    cluster = load_settings(None, {"qdrant": {"url": SERVER}}).qdrant.cluster
    assert cluster == ClusterSettings()
    assert (cluster.shard_number, cluster.replication_factor) == (None, None)
    assert (cluster.write_consistency_factor, cluster.write_ordering) == (None, None)


def test_keys_are_read_from_the_environment_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_QDRANT__URL", SERVER)
    monkeypatch.setenv("CONNECTOR_QDRANT__CLUSTER__SHARD_NUMBER", "6")
    monkeypatch.setenv("CONNECTOR_QDRANT__CLUSTER__WRITE_ORDERING", "strong")
    cluster = load_settings(None, {"qdrant": {"cluster": {"replication_factor": 3}}}).qdrant.cluster
    assert (cluster.shard_number, cluster.replication_factor) == (6, 3)
    assert cluster.write_ordering == "strong"
    for key, bad in [
        ("shard_number", 0),
        ("replication_factor", 0),
        ("write_consistency_factor", 0),
        ("write_ordering", "eventual"),
        ("typo", 1),
    ]:
        with pytest.raises(ConfigError, match=rf"qdrant\.cluster\.{key}"):
            load_settings(None, {"qdrant": {"cluster": {key: bad}}})
    too_many = {"replication_factor": 2, "write_consistency_factor": 3}
    with pytest.raises(ConfigError, match="must not exceed replication_factor"):
        load_settings(None, {"qdrant": {"cluster": too_many}})


@pytest.mark.parametrize("engine", ["edge", "local"])
def test_the_embedded_engines_refuse_the_keys(engine: str) -> None:
    keys = {"shard_number": 2, "write_ordering": "weak"}
    with pytest.raises(
        ConfigError,
        match=rf"qdrant\.cluster \(shard_number, write_ordering\) applies to a Qdrant server; "
        rf"the embedded {engine} engine",
    ):
        load_settings(None, {"qdrant": {"engine": engine, "cluster": keys}})


def test_options_under_qdrant_collection_are_pointed_to_their_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `qdrant.collection` names the chunk collection: a table there is a misplaced section.
    with pytest.raises(ConfigError, match=r"go in \[qdrant\.cluster\]"):
        load_settings(None, {"qdrant": {"url": SERVER, "collection": {"shard_number": 3}}})
    monkeypatch.setenv("CONNECTOR_QDRANT__COLLECTION__SHARD_NUMBER", "3")
    with pytest.raises(ConfigError, match=r"go in \[qdrant\.cluster\]"):
        load_settings(None, {"qdrant": {"url": SERVER}})
    monkeypatch.delenv("CONNECTOR_QDRANT__COLLECTION__SHARD_NUMBER")
    assert load_settings(None, {"qdrant": {"collection": "docs"}}).qdrant.collection == "docs"


def test_open_store_gives_the_cluster_options_to_a_server_only(tmp_path: Path) -> None:
    server = load_settings(None, {"qdrant": {"url": SERVER, "cluster": {"shard_number": 4}}})
    assert open_store(server, client=ServerLike()).cluster == server.qdrant.cluster  # type: ignore[arg-type]
    edge = load_settings(None, {"state_dir": str(tmp_path)})
    assert open_store(edge, client=ServerLike()).cluster is None  # type: ignore[arg-type]


# -- creation ----------------------------------------------------------------------------------


def test_a_first_sync_creates_its_collections_with_the_options_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONNECTOR_QDRANT__CLUSTER__SHARD_NUMBER", "6")
    monkeypatch.setenv("CONNECTOR_QDRANT__CLUSTER__REPLICATION_FACTOR", "2")
    monkeypatch.setenv("CONNECTOR_QDRANT__CLUSTER__WRITE_CONSISTENCY_FACTOR", "2")
    settings = load_settings(None, {"qdrant": {"url": SERVER, "index": {"m": 24}}})
    client = ServerLike()
    store = open_store(settings, client=client)  # type: ignore[arg-type]
    Syncer(chunk_writer(settings, store), [FakeDense()], bm25(), batch_size=8).run(
        ListSource(CHUNKS)
    )

    chunks, runs = created(client)
    assert (chunks["shard_number"], chunks["replication_factor"]) == (6, 2)
    assert chunks["write_consistency_factor"] == 2
    # Beside the index parameters, which stay as they were.
    assert chunks["hnsw_config"] == qm.HnswConfigDiff(m=24, ef_construct=100)
    assert chunks["on_disk_payload"] is True
    # The runs collection: replicated and acknowledged alike, on the server's shard number.
    assert (runs["replication_factor"], runs["write_consistency_factor"]) == (2, 2)
    assert "shard_number" not in runs
    # A first sync still loads with the graph off and restores it after.
    hnsw = [kw["hnsw_config"] for kw in client.requests("update_collection") if "hnsw_config" in kw]
    assert hnsw == [qm.HnswConfigDiff(m=0), qm.HnswConfigDiff(m=24, ef_construct=100)]
    store.close()


def test_unset_options_are_not_sent() -> None:
    client = ServerLike()
    store = Store(client, index=IndexSettings(), cluster=ClusterSettings(replication_factor=3))  # type: ignore[arg-type]
    Syncer(Writer(store, "chunks"), [FakeDense()], bm25()).run(ListSource(CHUNKS))
    chunks, runs = created(client)
    assert chunks["replication_factor"] == runs["replication_factor"] == 3
    sent = {key for kw in (chunks, runs) for key in kw}
    assert not sent & {"shard_number", "write_consistency_factor"}
    store.close()

    client = ServerLike()
    store = Store(client, index=IndexSettings())  # type: ignore[arg-type]
    Syncer(Writer(store, "chunks"), [FakeDense()], bm25()).run(ListSource(CHUNKS))
    sent = {key for kw in created(client) for key in kw}
    assert not sent & {"shard_number", "replication_factor", "write_consistency_factor"}
    store.close()


def test_a_rebuilt_collection_is_created_with_the_options_too() -> None:
    client = ServerLike()
    cluster = ClusterSettings(shard_number=3, replication_factor=2)
    store = Store(client, index=IndexSettings(), cluster=cluster)  # type: ignore[arg-type]
    Syncer(Writer(store, "chunks"), [FakeDense()], bm25()).run(ListSource(CHUNKS))
    client.sent.clear()
    rebuild_collection(
        store, "chunks", CollectionLayout(dense={"fake": 32}), {"fake": FakeDense(dim=32)}
    )
    (new,) = client.requests("create_collection")
    assert (new["shard_number"], new["replication_factor"]) == (3, 2)
    store.close()


# -- writes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ordering", ["weak", "medium", "strong", None])
def test_every_write_of_a_sync_carries_the_ordering(ordering: str | None) -> None:
    client = ServerLike()
    cluster = ClusterSettings(write_ordering=ordering)  # type: ignore[arg-type]
    store = Store(client, index=IndexSettings(), cluster=cluster)  # type: ignore[arg-type]
    writer = Writer(store, "chunks", batch_size=8)
    # Upserts with the sparse model off; then its vectors backfilled (vector updates, and
    # payload updates: each point's record of its encoders), and one chunk gone (a delete).
    Syncer(writer, [FakeDense()], None, batch_size=8).run(ListSource(CHUNKS))
    report = Syncer(writer, [FakeDense()], bm25(), batch_size=8).run(ListSource(CHUNKS[:-1]))
    counts = report.writes
    assert (counts.vectors_updated, counts.payloads_updated, counts.deleted) == (39, 39, 1)

    writes = [(method, kw) for method, kw in client.sent if method in WRITES]
    assert {method for method, _ in writes} == set(WRITES)
    expected = None if ordering is None else qm.WriteOrdering(ordering)
    assert [(method, kw["ordering"]) for method, kw in writes] == [
        (method, expected) for method, _ in writes
    ]
    store.close()


def test_plain_writes_and_store_calls_carry_the_ordering() -> None:
    # The writer's plain points (what a server is sent as PointStruct and PointVectors), and the
    # store's own writes, as the runs record and the lease use them.
    client = ServerLike()
    store = Store(client, cluster=ClusterSettings(write_ordering="medium"))  # type: ignore[arg-type]
    store.create_collection("c", {"d": qm.VectorParams(size=2, distance=qm.Distance.COSINE)})
    one, two = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
    store.write_points("c", [PointWrite(id=one, vectors={"d": [1.0, 0.0]}, payload={"a": 1})])
    store.write_vectors("c", [(one, {"d": [0.0, 1.0]})])
    store.upsert("c", [qm.PointStruct(id=two, vector={"d": [1.0, 1.0]}, payload={})])
    store.overwrite_payloads("c", [(two, {"b": 2})])
    store.delete("c", [one])
    sent = [(method, kw["ordering"]) for method, kw in client.sent if method in WRITES]
    medium = qm.WriteOrdering.MEDIUM
    assert sent == [
        ("upsert", medium),
        ("update_vectors", medium),
        ("upsert", medium),
        ("batch_update_points", medium),
        ("delete", medium),
    ]
    assert [p.id for p in store.scroll("c")[0]] == [two]
    store.close()

"""The edge engine's own behaviour; the sync and search checks run on it in their own files."""

from __future__ import annotations

from pathlib import Path

import pytest
from qdrant_client import models as qm

from connector.errors import SinkError
from connector.settings import load_settings
from connector.store import make_client
from connector.store.edge import EdgeClient

ID = "6f1c9a52-58a7-4b8e-9d0e-3c2f4b1a7d10"


@pytest.fixture
def client(tmp_path: Path):
    client = EdgeClient(tmp_path)
    yield client
    client.close()


def make_collection(client: EdgeClient, name: str = "c") -> None:
    client.create_collection(
        name,
        vectors_config={"d": qm.VectorParams(size=2, distance=qm.Distance.COSINE)},
        sparse_vectors_config={"s": qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
        metadata={"connector": {"v": 1}},
    )


def test_settings_pick_the_engine_for_embedded_paths(tmp_path: Path) -> None:
    settings = load_settings(None, {"state_dir": str(tmp_path), "qdrant": {"engine": "edge"}})
    client = make_client(settings)
    try:
        assert isinstance(client, EdgeClient)
        assert client.root == tmp_path / "qdrant" / "edge"
    finally:
        client.close()


def test_points_vectors_and_metadata_survive_a_reopen(tmp_path: Path) -> None:
    client = EdgeClient(tmp_path)
    make_collection(client)
    client.upsert(
        "c",
        [
            qm.PointStruct(
                id=ID,
                vector={"d": [3.0, 4.0], "s": qm.SparseVector(indices=[7], values=[0.5])},
                payload={"source": "x", "nested": {"k": [1, 2]}},
            )
        ],
    )
    client.update_collection("c", metadata={"other": True})
    client.close()

    client = EdgeClient(tmp_path)
    try:
        (record,) = client.retrieve("c", [ID], with_payload=True, with_vectors=True)
        assert record.id == ID and record.payload == {"source": "x", "nested": {"k": [1, 2]}}
        assert record.vector["d"] == pytest.approx([0.6, 0.8])  # cosine vectors are normalised
        assert record.vector["s"] == qm.SparseVector(indices=[7], values=[0.5])
        info = client.get_collection("c")
        assert info.points_count == 1
        assert info.config.params.vectors["d"].size == 2
        assert info.config.params.sparse_vectors["s"].modifier == qm.Modifier.IDF
        # Top-level keys merge, as on a server.
        assert info.config.metadata == {"connector": {"v": 1}, "other": True}
        assert [c.name for c in client.get_collections().collections] == ["c"]
    finally:
        client.close()


def test_a_second_process_on_the_folder_gets_a_clear_error(client: EdgeClient) -> None:
    with pytest.raises(SinkError, match="in use by another process"):
        EdgeClient(client.root.parent)


def test_payload_only_collection(client: EdgeClient) -> None:
    client.create_collection("runs", metadata={"kind": "runs"})
    client.upsert("runs", [qm.PointStruct(id=ID, vector={}, payload={"status": "ok"})])
    points, offset = client.scroll("runs", with_vectors=True)
    assert offset is None
    assert [(p.id, p.payload, p.vector) for p in points] == [(ID, {"status": "ok"}, {})]
    assert not client.get_collection("runs").config.params.sparse_vectors


def test_filters_paging_and_deletes(client: EdgeClient) -> None:
    make_collection(client)
    ids = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(5)]
    client.upsert(
        "c",
        [
            qm.PointStruct(id=p, vector={"d": [1.0, i]}, payload={"source": "a" if i < 3 else "b"})
            for i, p in enumerate(ids)
        ],
    )
    flt = qm.Filter(must=[qm.FieldCondition(key="source", match=qm.MatchValue(value="a"))])
    first, offset = client.scroll("c", flt, limit=2, with_payload=False)
    rest, end = client.scroll("c", flt, limit=2, offset=offset, with_payload=False)
    assert end is None and {p.id for p in first + rest} == set(ids[:3])
    client.delete("c", qm.PointIdsList(points=ids[:2]))
    client.delete("c", qm.FilterSelector(filter=flt))
    assert client.count("c").count == 2


def test_what_the_engine_cannot_do_is_a_sink_error(client: EdgeClient) -> None:
    make_collection(client)
    with pytest.raises(SinkError, match="named vectors only"):
        client.create_collection("u", vectors_config=qm.VectorParams(size=2, distance="Cosine"))
    with pytest.raises(SinkError, match="cannot be used"):
        client.collection_exists("../escape")
    with pytest.raises(SinkError, match="does not exist"):
        client.get_collection("missing")
    with pytest.raises(SinkError, match="dimension"):
        client.upsert("c", [qm.PointStruct(id=ID, vector={"d": [1.0, 2.0, 3.0]})])
    with pytest.raises(SinkError, match="does not run"):
        client.query_points("c", query=qm.OrderByQuery(order_by="x"))
    with pytest.raises(SinkError, match="cannot index"):
        client.create_payload_index("c", "k", qm.KeywordIndexParams(type="keyword"))

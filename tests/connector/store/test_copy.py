"""A store written by the local engine under the edge default: detected, refused until copied, and
copied exactly by `connector migrate --engine edge` (also when a copy was interrupted)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from connector.errors import SinkError
from connector.store import Store, copy_local_store, local_collections_left
from connector.store.edge import EdgeClient
from tests.cli import run
from tests.faults import FaultyClient, http_status

CONFIG = """
[dense]
models = [{ encoder = "connector.dense_plugins:RateEncoder", name = "vec", options = { dim = 32 } }]
"""


@pytest.fixture
def local_store(workdir: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two syncs (sparse off, then on) into the local engine, as before edge was the default."""
    (workdir / "connector.toml").write_text(CONFIG)
    monkeypatch.setenv("CONNECTOR_QDRANT__ENGINE", "local")
    assert run(capsys, "sync", "--source", "corpus.jsonl", "--disable-sparse")[0] == 0
    assert run(capsys, "sync", "--source", "corpus.jsonl")[0] == 0
    monkeypatch.delenv("CONNECTOR_QDRANT__ENGINE")
    return workdir / ".connector" / "qdrant"


def points(client: Any, collection: str) -> dict[Any, tuple[Any, Any]]:
    """Every point of ``collection``: id → (payload, vectors as plain lists)."""
    found: dict[Any, tuple[Any, Any]] = {}
    offset = None
    while True:
        records, offset = client.scroll(
            collection, limit=16, offset=offset, with_payload=True, with_vectors=True
        )
        for r in records:
            vectors = {
                name: (v.indices, v.values) if hasattr(v, "indices") else list(v)
                for name, v in (r.vector or {}).items()
            }
            found[str(r.id)] = (r.payload, vectors)
        if offset is None:
            return found


def assert_same_points(local: dict[Any, Any], edge: dict[Any, Any]) -> None:
    assert local and set(edge) == set(local)
    for pid, (payload, vectors) in local.items():
        edge_payload, edge_vectors = edge[pid]
        assert edge_payload == payload
        assert set(edge_vectors) == set(vectors)
        for name, vector in vectors.items():
            if isinstance(vector, tuple):  # sparse: exactly, at the engine's float32
                assert list(edge_vectors[name][0]) == list(vector[0])
                assert np.array_equal(np.float32(edge_vectors[name][1]), np.float32(vector[1]))
            else:  # dense: float32 in the engine, normalised again (cosine) to the last bits
                assert np.allclose(edge_vectors[name], vector, rtol=0, atol=1e-6)


def content(client: Any) -> dict[Any, Any]:
    """Every collection's points, and the aliases, of an open client (closed after)."""
    try:
        return {
            name: points(client, name)
            for name in sorted(c.name for c in client.get_collections().collections)
        } | {"aliases": {a.alias_name: a.collection_name for a in client.get_aliases().aliases}}
    finally:
        client.close()


def local_content(path: Path) -> dict[Any, Any]:
    return content(QdrantClient(path=str(path)))


def edge_content(path: Path) -> dict[Any, Any]:
    return content(EdgeClient(path))


def files_of_local_engine(path: Path) -> dict[str, str]:
    """Digest of each file the local engine keeps (its lock file and the edge store aside)."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != ".lock" and "edge" not in p.relative_to(path).parts
    }


def assert_same_store(local: dict[Any, Any], edge: dict[Any, Any]) -> None:
    assert set(edge) == set(local) == {"chunks__1", "connector_runs", "aliases"}
    assert edge["aliases"] == local["aliases"] == {"chunks": "chunks__1"}
    for name in ("chunks__1", "connector_runs"):
        assert_same_points(local[name], edge[name])


def runs_listing(capsys, monkeypatch: pytest.MonkeyPatch, engine: str | None) -> list[Any]:
    if engine is not None:
        monkeypatch.setenv("CONNECTOR_QDRANT__ENGINE", engine)
    code, out, err = run(capsys, "runs", "--json")
    monkeypatch.delenv("CONNECTOR_QDRANT__ENGINE", raising=False)
    assert code == 0, err
    return json.loads(out)


def top_hits(capsys, monkeypatch: pytest.MonkeyPatch, engine: str | None) -> list[str]:
    if engine is not None:
        monkeypatch.setenv("CONNECTOR_QDRANT__ENGINE", engine)
    code, out, err = run(capsys, "search", "flow past a flat plate", "--json", "--limit", "5")
    monkeypatch.delenv("CONNECTOR_QDRANT__ENGINE", raising=False)
    assert code == 0, err
    return [hit["chunk_id"] for hit in json.loads(out)]


def test_a_local_store_is_refused_until_copied_then_copied_exactly(
    local_store: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = local_content(local_store)
    local_files = files_of_local_engine(local_store)
    local_runs = runs_listing(capsys, monkeypatch, "local")
    local_hits = top_hits(capsys, monkeypatch, "local")
    assert len(local_runs) == 2 and len(local_hits) == 5

    # Edge by default: nothing is read as an empty store, nothing re-encoded.
    for argv in (("sync", "--source", "corpus.jsonl"), ("search", "flow"), ("runs",)):
        code, out, err = run(capsys, *argv)
        assert code == 1 and err.count("\n") == 1, err
        assert ".connector/qdrant holds a store of the local engine" in err
        assert "`connector migrate --engine edge`" in err and 'qdrant.engine = "local"' in err
    assert not (local_store / "edge" / "chunks__1").exists()

    code, out, err = run(capsys, "migrate", "--engine", "edge")
    assert code == 0, err
    assert "copied chunks__1: 40 points" in out and "copied connector_runs: 2 points" in out
    assert "alias chunks -> chunks__1" in out and "copied 2 collections and 1 aliases" in out

    assert_same_store(before, edge_content(local_store))
    assert files_of_local_engine(local_store) == local_files  # the local data stays as it was
    assert runs_listing(capsys, monkeypatch, None) == local_runs
    assert top_hits(capsys, monkeypatch, None) == local_hits
    code, out, err = run(capsys, "sync", "--source", "corpus.jsonl", "--json")
    assert code == 0 and err == "", err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["skipped_unchanged"] == 40 and report["encoded"] == 0  # nothing re-encoded

    # A second copy refuses, writing nothing; --replace copies the local store over the edge one.
    code, _, err = run(capsys, "migrate", "--engine", "edge")
    assert code == 1 and "already holds 'chunks', 'chunks__1', 'connector_runs'" in err
    assert "--replace" in err
    code, out, err = run(capsys, "migrate", "--engine", "edge", "--replace", "--json")
    assert code == 0, err
    assert json.loads(out)["collections"] == {"chunks__1": 40, "connector_runs": 2}
    assert_same_store(before, edge_content(local_store))


def test_edge_chosen_explicitly_beside_a_local_store_says_so_in_one_line_and_runs(
    local_store: Path, capsys, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CONNECTOR_QDRANT__ENGINE", "edge")
    code, _, err = run(capsys, "sync", "--source", "corpus.jsonl", "--json")
    assert code == 0, err
    (line,) = [r.getMessage() for r in caplog.records if "local engine" in r.getMessage()]
    assert "\n" not in line
    assert ".connector/qdrant holds a store of the local engine" in line
    assert "`connector migrate --engine edge` copies it" in line
    edge_collections = {c.name for c in EdgeClient(local_store).get_collections().collections}
    assert edge_collections == {"chunks__1", "connector_runs"}  # a store of its own


def test_an_interrupted_copy_leaves_the_local_store_alone_and_a_rerun_completes(
    local_store: Path, capsys
) -> None:
    before = local_content(local_store)
    local_files = files_of_local_engine(local_store)
    edge_client = EdgeClient(local_store)
    faulty = FaultyClient(edge_client)  # type: ignore[arg-type]
    faulty.fail("upsert", http_status(400), on_call=2)
    local = Store(QdrantClient(path=str(local_store)))
    try:
        with pytest.raises(SinkError, match="HTTP 400"):
            copy_local_store(
                local, Store(faulty), edge_client.root, runs_collection="connector_runs", page=8
            )
        assert faulty.calls["upsert"] == 2  # failed part-way through the first collection
        # Part of a collection is there; the store still counts as not copied.
        assert local_collections_left(local_store, edge_client) == [
            "chunks",
            "chunks__1",
            "connector_runs",
        ]
    finally:
        local.close()
        edge_client.close()
    assert files_of_local_engine(local_store) == local_files
    code, _, err = run(capsys, "sync", "--source", "corpus.jsonl")
    assert code == 1 and "holds a store of the local engine" in err

    code, out, err = run(capsys, "migrate", "--engine", "edge")  # no --replace needed
    assert code == 0, err
    assert_same_store(before, edge_content(local_store))
    assert files_of_local_engine(local_store) == local_files


def test_migrate_engine_without_a_local_store_says_there_is_none(workdir: Path, capsys) -> None:
    code, _, err = run(capsys, "migrate", "--engine", "edge")
    assert code == 1 and "holds no store of the local engine" in err
    code, _, err = run(capsys, "migrate", "--replace")
    assert code == 1 and "--replace goes with --engine edge" in err


def test_a_local_store_is_known_by_its_folders_when_its_meta_file_is_unreadable(
    tmp_path: Path,
) -> None:
    edge = EdgeClient(tmp_path)
    try:
        assert local_collections_left(tmp_path, edge) == []  # no local store: nothing to say
        (tmp_path / "collection" / "chunks__1").mkdir(parents=True)
        (tmp_path / "meta.json").write_text("{not json")
        assert local_collections_left(tmp_path, edge) == ["chunks__1"]
        (tmp_path / "meta.json").write_text('{"collections": {}, "aliases": {}}')
        assert local_collections_left(tmp_path, edge) == []  # an empty local store
    finally:
        edge.close()


def test_migrate_engine_refuses_a_server(workdir: Path, capsys) -> None:
    (workdir / "server.toml").write_text('[qdrant]\nurl = "http://localhost:1"\n')
    code, _, err = run(capsys, "migrate", "--engine", "edge", "--config", "server.toml")
    assert code == 1 and "qdrant.url is set" in err

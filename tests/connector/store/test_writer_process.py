"""A collection of the embedded engine lent to a writer process for a run, and given back."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from connector.errors import SinkError
from connector.store import PointWrite, SparseValues, Store, Writer
from connector.store.edge import EdgeClient

IDS = [f"00000000-0000-0000-0000-00000000000{n}" for n in range(1, 5)]


def make_collection(client: EdgeClient | QdrantClient) -> None:
    client.create_collection(
        "chunks",
        vectors_config={"d": qm.VectorParams(size=2, distance=qm.Distance.COSINE)},
        sparse_vectors_config={"s": qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
    )


def point(n: int) -> PointWrite:
    return PointWrite(
        IDS[n], {"d": [1.0, float(n)], "s": SparseValues([n + 1], [0.5])}, {"n": n, "m": {"k": n}}
    )


def writer_processes() -> list[multiprocessing.Process]:
    return [p for p in multiprocessing.active_children() if p.name == "connector-writer"]


@pytest.fixture
def edge(tmp_path: Path):
    client = EdgeClient(tmp_path)
    make_collection(client)
    client.create_collection("other", vectors_config={})
    store = Store(client)
    yield store, client
    store.close()


def test_reads_and_writes_go_to_the_writer_process_and_the_collection_comes_back(edge) -> None:
    store, client = edge
    store.write_points("chunks", [point(0)])
    with store.in_writer_process("chunks") as moved:
        assert moved and len(writer_processes()) == 1
        store.write_points("chunks", [point(1), point(2)])
        store.write_vectors("chunks", [(IDS[0], {"s": SparseValues([9], [2.0])})])
        store.overwrite_payloads("chunks", [(IDS[1], {"n": 10})])
        found = store.retrieve("chunks", IDS, with_payload=["n"])
        assert sorted(r.payload["n"] for r in found) == [0, 2, 10]
        # Held by the writer process alone; the other collections stay here.
        with pytest.raises(SinkError, match="lent to the sync's writer process"):
            client.count("chunks")
        assert client.count("other").count == 0
    assert writer_processes() == []

    records = client.retrieve("chunks", IDS, with_payload=True, with_vectors=True)
    by_id = {str(r.id): r for r in records}
    assert set(by_id) == set(IDS[:3])
    assert by_id[IDS[2]].payload == {"n": 2, "m": {"k": 2}}
    assert by_id[IDS[2]].vector["d"] == pytest.approx([0.4472136, 0.8944272])
    assert by_id[IDS[0]].vector["s"] == qm.SparseVector(indices=[9], values=[2.0])


def test_a_failed_call_there_raises_here_and_the_process_goes_on(edge) -> None:
    store, _ = edge
    with store.in_writer_process("chunks"):
        wrong = PointWrite(IDS[0], {"d": [1.0, 2.0, 3.0]}, {})
        with pytest.raises(SinkError, match="upsert 1 points in 'chunks': Vector dimension error"):
            store.write_points("chunks", [wrong])
        store.write_points("chunks", [point(3)])
    assert store.count("chunks") == 1


def test_a_dead_writer_process_fails_the_call_and_keeps_what_it_acknowledged(edge) -> None:
    store, client = edge
    with store.in_writer_process("chunks"):
        store.write_points("chunks", [point(0), point(1)])
        (process,) = writer_processes()
        os.kill(process.pid, signal.SIGKILL)
        process.join()
        with pytest.raises(SinkError, match=r"writer process of 'chunks' stopped \(exit code -9\)"):
            store.write_points("chunks", [point(2)])
    assert writer_processes() == []
    assert sorted(str(r.id) for r in client.retrieve("chunks", IDS)) == IDS[:2]


def test_a_server_or_local_mode_client_keeps_its_writes_in_this_process(tmp_path: Path) -> None:
    client = QdrantClient(path=str(tmp_path))
    make_collection(client)
    store = Store(client)
    try:
        writer = Writer(store, "chunks")
        with writer.in_writer_process() as moved:
            assert not moved and writer_processes() == []
            store.write_points("chunks", [point(0)])
            store.write_vectors("chunks", [(IDS[0], {"s": SparseValues([9], [2.0])})])
        (record,) = client.retrieve("chunks", [IDS[0]], with_vectors=True)
        assert record.vector["s"] == qm.SparseVector(indices=[9], values=[2.0])
    finally:
        store.close()

"""The class each Ray actor runs, in this process: the roles split and join a window's vectors
as a local sync computes them, and a writer writes the points a local sync would."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import connector
from connector.compute import EncodeActor, Encoded, WriteTarget
from connector.pipeline._plan import Planner, Window
from connector.settings import load_settings
from connector.wiring import build_syncer
from tests.connector.compute.rest import RestWrites, serving
from tests.connector.store.servers import ServerLike
from tests.fakes import ListSource, chunk

CHUNKS = [chunk(f"c{i}", f"text {i} on panel flutter and shells {i % 5}") for i in range(12)]
SOURCE = ListSource(CHUNKS, name="docs")
RATE = {"encoder": "connector.dense_plugins:RateEncoder", "name": "vec", "options": {"dim": 8}}


def settings_for(tmp_path: Path, url: str | None = None) -> Any:
    return load_settings(
        None,
        {
            "state_dir": str(tmp_path / "state"),
            "qdrant": {"url": url} if url else {},
            "dense": {"models": [RATE]},
            "sparse": {"model": "qdrant-bm25"},
        },
    )


def windows(job: Any) -> list[Window]:
    """The source's windows as the driver plans them for a first sync."""
    job.writer.ensure_collection(job.syncer.layout())
    signatures = {"vec": "rate-encoder|dim=8", "qdrant-bm25": job.syncer.sparse.signature}
    planner = Planner(job.writer, signatures, strict=False, new_source=True)
    return list(planner.windows(SOURCE, 5))


def test_the_dense_and_sparse_halves_are_the_vectors_of_one_encode_actor(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    with build_syncer(settings, source=SOURCE, client=ServerLike(), record=False) as job:
        window = windows(job)[0]
    whole = EncodeActor(settings, "encode", 0).encode(copy.deepcopy(window))
    dense = EncodeActor(settings, "dense", 1).encode(copy.deepcopy(window))
    sparse = EncodeActor(settings, "sparse", 2).encode(copy.deepcopy(window))
    assert set(dense.vectors) == {"vec"} and set(sparse.vectors) == {"qdrant-bm25"}
    assert dense.vectors | sparse.vectors == whole.vectors
    assert len(whole.vectors["vec"]) == len(whole.vectors["qdrant-bm25"]) == 5
    assert [r.chunks for r in (*whole.reports, *dense.reports, *sparse.reports)] == [5, 5, 5]
    assert dense.reports[0].role == "dense" and dense.reports[0].device == "cpu"
    assert dense.reports[0].batch_size == 256  # the plug-in's own batch size, on the CPU


def test_a_writer_joins_the_halves_and_writes_every_point_of_the_run(
    tmp_path: Path,
) -> None:
    server = ServerLike()
    writes = RestWrites(server.inner)
    with serving(writes) as url:
        settings = settings_for(tmp_path, url)
        with build_syncer(settings, source=SOURCE, client=server, record=False) as job:
            name = job.writer.collection
            dense, sparse = EncodeActor(settings, "dense", 0), EncodeActor(settings, "sparse", 1)
            writer = EncodeActor(settings, "write", 2)
            target = WriteTarget("run-1", "docs", name, {"vec": "rate-encoder|dim=8"}, ["vec"])
            results: list[Encoded] = []
            for window in windows(job):
                halves = [dense.encode(copy.deepcopy(window)), sparse.encode(copy.deepcopy(window))]
                results.append(writer.encode(window, *halves, target=target))
            writer.close()
            stored, _ = server.inner.scroll(name, limit=100, with_vectors=True)
    assert sum(r.written.upserted for r in results if r.written) == len(CHUNKS)
    assert all(r.vectors == {} for r in results)  # written: nothing travels back
    assert [r.role for r in results[-1].reports] == ["dense", "sparse", "write"]
    assert sorted(p.payload["chunk_id"] for p in stored) == sorted(c.chunk_id for c in CHUNKS)
    assert all(set(p.vector) == {"vec", "qdrant-bm25"} for p in stored)
    assert {p.payload["run_id"] for p in stored} == {"run-1"}
    assert {method for method, _, _ in writes.received} == {"upsert"}


def test_an_actor_says_what_its_models_write(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with build_syncer(settings, source=SOURCE, client=ServerLike(), record=False) as job:
        expected = {"vec": "rate-encoder|dim=8", "qdrant-bm25": job.syncer.sparse.signature}
    ready = [EncodeActor(settings, role, 0).ready() for role in ("encode", "dense", "sparse")]
    assert [r["signatures"] for r in ready] == [
        expected,
        {"vec": expected["vec"]},
        {"qdrant-bm25": expected["qdrant-bm25"]},
    ]
    assert {r["version"] for r in ready} == {connector.__version__}

"""A sync and a search wired by ``build_syncer`` and ``build_searcher``, as the CLI, the dashboard
and the benchmarks run them (embedded edge engine, hashed dense encoder, real BM25)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.runs import iter_summaries, read_progress
from connector.settings import Settings, load_settings
from connector.store.edge import EdgeClient
from connector.wiring import build_searcher, build_syncer
from tests.fakes import FakeDense, ListSource, chunk, recording_telemetry

CORPUS = [
    chunk("shell", "buckling of cylindrical shells under axial compression"),
    chunk("plate", "boundary layer transition on a flat plate"),
    chunk("jet", "noise of a supersonic jet"),
]


def settings(workdir: Path) -> Settings:
    return load_settings(None, {"state_dir": str(workdir / "state")})


def engine(workdir: Path) -> EdgeClient:
    return EdgeClient(workdir / "qdrant")


@pytest.mark.parametrize("record", [False, True])
def test_a_run_leaves_a_manifest_and_progress_only_when_recorded(
    workdir: Path, record: bool
) -> None:
    conf = settings(workdir)
    with build_syncer(
        conf, source=ListSource(CORPUS), dense=[FakeDense()], client=engine(workdir), record=record
    ) as job:
        run = job.run()
    assert run.writes.upserted == 3
    assert [m.run.id for m in iter_summaries(conf.state_dir)] == ([run.run_id] if record else [])
    assert (read_progress(conf.state_dir) is not None) is record


@pytest.mark.parametrize(
    ("sparse", "vectors"), [(False, {"fake"}), (True, {"fake", "qdrant-bm25"})]
)
def test_sparse_off_writes_dense_vectors_only(
    workdir: Path, sparse: bool, vectors: set[str]
) -> None:
    with build_syncer(
        settings(workdir),
        source=ListSource(CORPUS),
        dense=[FakeDense()],
        client=engine(workdir),
        sparse=sparse,
        record=False,
    ) as job:
        job.run()
        points, _ = job.store.scroll(job.writer.collection, with_vectors=True)
    assert len(points) == 3
    assert all(isinstance(p.vector, dict) and set(p.vector) == vectors for p in points)


def test_build_searcher_finds_a_chunk_build_syncer_synced(workdir: Path) -> None:
    conf, dense = settings(workdir), FakeDense()
    with build_syncer(
        conf, source=ListSource(CORPUS), dense=[dense], client=engine(workdir), record=False
    ) as job:
        job.run()
    with build_searcher(conf, dense=[dense], client=engine(workdir)) as searcher:
        for mode in ("dense", "sparse", "hybrid"):
            hits = searcher.search("buckling of cylindrical shells", mode=mode, limit=1)
            assert [hit.chunk_id for hit in hits] == ["shell"], mode


def test_the_jobs_telemetry_receives_the_spans_of_every_stage(workdir: Path) -> None:
    # Not only the syncer's and the store's: the dense stage's and the sparse generator's too,
    # as when the CLI installs its providers globally (a benchmark does not).
    telemetry, exporter = recording_telemetry()
    with build_syncer(
        settings(workdir),
        source=ListSource(CORPUS),
        dense=[FakeDense()],
        client=engine(workdir),
        telemetry=telemetry,  # type: ignore[arg-type]
        record=False,
    ) as job:
        job.run()
    names = {span.name for span in exporter.get_finished_spans()}  # type: ignore[attr-defined]
    assert names >= {"sync", "dense", "dense_model", "sparse_inference", "upsert"}

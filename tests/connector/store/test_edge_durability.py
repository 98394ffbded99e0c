"""A sync on the edge engine killed with -9 at any moment (as it starts, mid-load, while it builds
the index at the end) leaves a store that opens, and the next run converges to exactly the points
a clean run stores, with its index parameters back. Real processes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import models as qm

from connector.runs.live import read_progress
from connector.store import Store
from connector.store.edge import EdgeClient
from tests.processes import Reaper

pytestmark = pytest.mark.slow

CHUNKS = 12_000
"""Enough 384-d points that the index build at the end of a first sync takes seconds."""
_ENCODER = [{"encoder": "connector.dense_plugins:RateEncoder", "name": "vec", "options": {}}]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(3)
    words = "wing flow shell heat plate boundary layer shock flutter buckling panel jet".split()
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    with path.open("w") as handle:
        for i in range(CHUNKS):
            text = " ".join(rng.choice(words) for _ in range(30))
            handle.write(json.dumps({"_id": str(i), "text": f"{text} doc{i}"}) + "\n")
    return path


def _sync(
    reaper: Reaper, workdir: Path, corpus: Path, segment_mb: int | None = None
) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "CONNECTOR_STATE_DIR": str(workdir / "state"),
        "CONNECTOR_QDRANT__ENGINE": "edge",
        "CONNECTOR_DENSE__MODELS": json.dumps(_ENCODER),
    }
    if segment_mb is not None:
        env["CONNECTOR_QDRANT__INDEX__MAX_SEGMENT_MB"] = str(segment_mb)
    return reaper.start(
        [sys.executable, "-m", "connector", "sync", "--source", str(corpus)]
        + ["--source-name", "docs", "--json"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


RUN_KEYS = {"run_id", "synced_at"}
"""Payload keys that name the run that wrote the point: they differ between two clean runs."""


def _fingerprint(record: qm.Record) -> tuple[Any, ...]:
    assert isinstance(record.vector, dict) and record.payload is not None
    sparse = record.vector["qdrant-bm25"]
    assert isinstance(sparse, qm.SparseVector)
    payload = {k: v for k, v in record.payload.items() if k not in RUN_KEYS}
    return (
        json.dumps(payload, sort_keys=True),
        tuple(record.vector["vec"]),  # type: ignore[arg-type]
        tuple(sparse.indices),
        tuple(sparse.values),
    )


def point_set(workdir: Path) -> dict[str, tuple[Any, ...]]:
    """Every stored point: its payload and both vectors, whole; opening the store is part of the
    check."""
    store = Store(EdgeClient(workdir / "state" / "qdrant"))
    try:
        return {
            str(record.id): _fingerprint(record)
            for page in store.pages("chunks", page=2000, with_vectors=True)
            for record in page
        }
    finally:
        store.close()


def _finish(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The report of a sync that succeeded."""
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def expected(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, ...]]:
    workdir = tmp_path_factory.mktemp("clean")
    with closing(Reaper()) as reaper:
        assert _finish(_sync(reaper, workdir, corpus))["upserted"] == CHUNKS
    return point_set(workdir)


def _done(workdir: Path) -> int | None:
    progress = read_progress(workdir / "state")
    return progress.chunks_done if progress is not None else None


def _building(workdir: Path) -> bool:
    # The engine builds new segments in temp_segments/ and swaps them in when done.
    shard = workdir / "state" / "qdrant" / "edge" / "chunks__1" / "shard"
    return any((shard / "temp_segments").glob("*"))


MOMENTS: dict[str, Callable[[Path], bool]] = {
    "as_it_starts": lambda workdir: _done(workdir) is not None,
    "mid_load": lambda workdir: (_done(workdir) or 0) >= CHUNKS // 2,
    "while_building_the_index": _building,
    # 4 MB segments: one sealed every ~2,700 points while the sync loads.
    "while_sealing_a_segment": lambda workdir: (
        _building(workdir) and (_done(workdir) or 0) < CHUNKS
    ),
}
SEGMENT_MB = {"while_sealing_a_segment": 4}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigkill_at_any_moment_then_the_store_opens_and_the_rerun_converges(
    tmp_path: Path, corpus: Path, expected: dict[str, tuple[Any, ...]], reaper: Reaper, moment: str
) -> None:
    segment_mb = SEGMENT_MB.get(moment)
    process = _sync(reaper, tmp_path, corpus, segment_mb)
    deadline = time.monotonic() + 240
    while not MOMENTS[moment](tmp_path):
        assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, f"the sync never got to {moment}"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

    interrupted = point_set(tmp_path)  # the store opens
    assert set(interrupted) <= set(expected)
    assert all(interrupted[pid] == expected[pid] for pid in interrupted)
    report = _finish(_sync(reaper, tmp_path, corpus, segment_mb))
    assert report["upserted"] == CHUNKS - len(interrupted) and report["deleted"] == 0
    assert point_set(tmp_path) == expected
    client = EdgeClient(tmp_path / "state" / "qdrant")
    try:
        info = client.get_collection("chunks")
    finally:
        client.close()
    assert info.config.hnsw_config.m == 16  # the graph is back, whenever the kill came
    # Every vector is indexed; with small segments, but for the last one, which is under the
    # size that gets an index (searching it by scanning is as fast).
    unindexed = 0 if segment_mb is None else segment_mb * 1024 * 1024 // (384 * 4)
    assert (info.indexed_vectors_count or 0) >= CHUNKS - unindexed

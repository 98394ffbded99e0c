"""A sync stopped mid-run by SIGTERM or SIGKILL: the next run converges to exactly the points a
clean run produces. Real processes, a real model and the embedded Qdrant."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient

from connector.runs.live import read_progress
from tests.paths import FIXTURES

pytestmark = pytest.mark.slow

CORPUS = FIXTURES / "corpus.jsonl"


class _NothingYet:
    chunks_done = 0


_NOTHING_YET = _NothingYet()


def _sync(workdir: Path, source: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = os.environ | {"CONNECTOR_STATE_DIR": str(workdir / "state")}
    return subprocess.Popen(
        [sys.executable, "-m", "connector", "sync", "--source", str(source)]
        + ["--source-name", "docs", "--batch-size", "8", "--json", *extra],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def point_set(workdir: Path) -> dict[str, tuple[Any, ...]]:
    client = QdrantClient(path=str(workdir / "state" / "qdrant"))
    try:
        points, _ = client.scroll("chunks", limit=1000, with_payload=True, with_vectors=True)
    finally:
        client.close()
    return {
        str(p.id): (
            p.payload["chunk_id"],
            p.payload["content_hash"],
            tuple(sorted(p.payload["encoded_with"].items())),
            tuple(sorted(p.vector)),
        )
        for p in points
    }


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, ...]]:
    workdir = tmp_path_factory.mktemp("clean")
    process = _sync(workdir, CORPUS)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()
    points = point_set(workdir)
    assert len(points) == 40
    return points


def _stop_mid_run(workdir: Path, signum: int) -> subprocess.Popen[bytes]:
    """Start a sync reading a pipe, feed it half the corpus, wait until points are being
    written, then send ``signum`` while the run waits for the rest."""
    fifo = workdir / "feed.jsonl"
    os.mkfifo(fifo)
    lines = CORPUS.read_bytes().splitlines(keepends=True)
    process = _sync(workdir, fifo)
    writer_done = threading.Event()

    def feed() -> None:
        with open(fifo, "wb") as handle:  # opens once the sync opens its end
            handle.write(b"".join(lines[:20]))
            handle.flush()
            writer_done.wait(timeout=300)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    deadline = time.monotonic() + 240
    while (read_progress(workdir / "state") or _NOTHING_YET).chunks_done < 16:
        assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the sync never started writing"
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signum)
    process.wait(timeout=60)
    writer_done.set()
    writer.join(timeout=10)
    return process


def _converges(workdir: Path, expected: dict[str, tuple[Any, ...]]) -> None:
    interrupted = point_set(workdir)
    assert 0 < len(interrupted) < 40
    assert set(interrupted) < set(expected)
    process = _sync(workdir, CORPUS)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["upserted"] == 40 - len(interrupted) and report["deleted"] == 0
    assert point_set(workdir) == expected


def test_sigterm_marks_the_run_interrupted_and_the_next_run_converges(
    tmp_path: Path, expected: dict[str, tuple[Any, ...]]
) -> None:
    process = _stop_mid_run(tmp_path, signal.SIGTERM)

    err = process.stderr.read().decode()  # type: ignore[union-attr]
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    (manifest,) = (tmp_path / "state" / "runs").glob("*/processing_summary.json")
    summary = json.loads(manifest.read_text())
    assert summary["run"]["status"] == "interrupted"
    assert summary["run"]["reason"] == "stopped by SIGTERM"
    assert summary["counts"]["upserted"] > 0
    _converges(tmp_path, expected)


def test_sigkill_mid_run_then_rerun_converges(
    tmp_path: Path, expected: dict[str, tuple[Any, ...]]
) -> None:
    process = _stop_mid_run(tmp_path, signal.SIGKILL)

    assert process.returncode == -signal.SIGKILL
    _converges(tmp_path, expected)

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

from connector.runs.live import read_progress
from connector.runs.manifest import ProcessInfo
from connector.store.edge import EdgeClient
from tests.paths import FIXTURES
from tests.processes import Reaper, survivors

pytestmark = pytest.mark.slow

CORPUS = FIXTURES / "corpus.jsonl"


class _NothingYet:
    chunks_done = 0


_NOTHING_YET = _NothingYet()


def _sync(reaper: Reaper, workdir: Path, source: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "CONNECTOR_STATE_DIR": str(workdir / "state"),
        # The fixture's 40 records are the chunks counted here (long ones are not cut).
        "CONNECTOR_CHUNKING__SPLIT_RECORDS": "false",
    }
    return reaper.start(
        [sys.executable, "-m", "connector", "sync", "--source", str(source)]
        + ["--source-name", "docs", "--batch-size", "8", "--json", *extra],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def point_set(workdir: Path) -> dict[str, tuple[Any, ...]]:
    client = EdgeClient(workdir / "state" / "qdrant")
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
    reaper = Reaper()
    try:
        process = _sync(reaper, workdir, CORPUS)
        _, err = process.communicate(timeout=300)
    finally:
        reaper.close()
    assert process.returncode == 0, err.decode()
    points = point_set(workdir)
    assert len(points) == 40
    return points


def _stop_mid_run(
    reaper: Reaper, workdir: Path, signum: int, workers: int
) -> tuple[subprocess.Popen[bytes], list[ProcessInfo]]:
    """Start a sync with ``workers`` reading a pipe, feed it half the corpus, wait until points
    are being written (as its live progress file shows), then send ``signum`` while the run
    waits for the rest. The process, and it and its descendants when signalled."""
    fifo = workdir / "feed.jsonl"
    os.mkfifo(fifo)
    lines = CORPUS.read_bytes().splitlines(keepends=True)
    process = _sync(reaper, workdir, fifo, "--workers", str(workers))
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
    started = reaper.look(process.pid)
    # The worker pool runs from the start of the run (in whatever processes it takes).
    assert workers == 1 or len(started) > workers, started
    process.send_signal(signum)
    process.wait(timeout=60)
    writer_done.set()
    writer.join(timeout=10)
    return process, started


def _converges(
    reaper: Reaper, workdir: Path, expected: dict[str, tuple[Any, ...]], workers: int
) -> None:
    interrupted = point_set(workdir)
    assert 0 < len(interrupted) < 40
    assert set(interrupted) < set(expected)
    process = _sync(reaper, workdir, CORPUS, "--workers", str(workers))
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["upserted"] == 40 - len(interrupted) and report["deleted"] == 0
    assert point_set(workdir) == expected


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_marks_the_run_interrupted_and_the_next_run_converges(
    tmp_path: Path, expected: dict[str, tuple[Any, ...]], reaper: Reaper, workers: int
) -> None:
    process, started = _stop_mid_run(reaper, tmp_path, signal.SIGTERM, workers)

    # Checked first: a process left running would hold the sync's stderr open.
    assert survivors(started, within_s=10) == []
    err = process.stderr.read().decode()  # type: ignore[union-attr]
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    (manifest,) = (tmp_path / "state" / "runs").glob("*/processing_summary.json")
    summary = json.loads(manifest.read_text())
    assert summary["run"]["status"] == "interrupted"
    assert summary["run"]["reason"] == "stopped by SIGTERM"
    assert summary["performance"]["workers"] == workers
    # Every write Qdrant acknowledged before the signal is stored.
    assert len(point_set(tmp_path)) >= summary["counts"]["upserted"] > 0
    _converges(reaper, tmp_path, expected, workers)


class OrphanedProcesses(Exception):
    """Processes that a killed sync had started still run."""


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_mid_run_then_rerun_converges(
    tmp_path: Path, expected: dict[str, tuple[Any, ...]], reaper: Reaper, workers: int
) -> None:
    process, started = _stop_mid_run(reaper, tmp_path, signal.SIGKILL, workers)

    assert process.returncode == -signal.SIGKILL
    orphans = survivors(started, within_s=10)
    _converges(reaper, tmp_path, expected, workers)
    if orphans:  # checked last: a run that does not converge is the first thing to know
        pids = [p.pid for p in orphans]
        raise OrphanedProcesses(f"{len(pids)} of {len(started)} still run after the kill: {pids}")

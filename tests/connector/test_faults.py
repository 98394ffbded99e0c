"""Faults between the connector and Qdrant: the run retries what is transient, stops at what is
not, counts only acknowledged writes, and a re-run always ends with the exact expected point set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient

from connector.errors import SinkError, SinkUnavailable, TerminalError, TransientError
from connector.pipeline.syncer import SparseTarget, Syncer
from connector.runs import RunRecord
from connector.sources import JsonlFileSource
from connector.sparse.generator import SparseVectorGenerator
from connector.store import Store, Writer
from tests.fakes import FakeDense
from tests.faults import FaultyClient, dropped_connection, http_status, timeout
from tests.paths import FIXTURES

CORPUS = FIXTURES / "corpus.jsonl"
SOURCE = "docs"


def source(path: Path = CORPUS) -> JsonlFileSource:
    return JsonlFileSource(path, name=SOURCE)


def sync(client: Any, path: Path = CORPUS, retries: int = 2, **kwargs: Any) -> RunRecord:
    sink = Writer(Store(client, retries=retries, sleep=lambda _: None), "chunks", batch_size=5)
    target = SparseTarget(SparseVectorGenerator(), "qdrant-bm25", "qdrant-bm25", idf=True)
    syncer = Syncer(sink, [FakeDense()], target, batch_size=10, **kwargs)
    try:
        return syncer.run(source(path))
    finally:
        assert syncer.record is not None
        sync.last_report = syncer.record  # type: ignore[attr-defined]


def point_set(client: Any) -> dict[str, tuple[Any, ...]]:
    """Every stored point: id → (chunk id, content hash, text hash, models, vector names)."""
    points, _ = client.scroll("chunks", limit=10_000, with_payload=True, with_vectors=True)
    return {
        str(p.id): (
            p.payload["chunk_id"],
            p.payload["content_hash"],
            p.payload["text_hash"],
            tuple(sorted(p.payload["encoded_with"].items())),
            tuple(sorted(p.vector)),
        )
        for p in points
    }


@pytest.fixture(scope="module")
def expected() -> dict[str, tuple[Any, ...]]:
    client = QdrantClient(":memory:")
    sync(client)
    return point_set(client)


@pytest.fixture
def faulty(tmp_path: Path):
    client = FaultyClient(QdrantClient(path=str(tmp_path / "qdrant")))
    yield client
    client.inner.close()


@pytest.mark.parametrize(
    "fault",
    [timeout(), timeout(applied=True), dropped_connection(), http_status(503), http_status(429)],
    ids=["timeout", "timeout-after-write", "dropped", "503", "429"],
)
def test_transient_upsert_failure_is_retried_and_the_run_succeeds(
    faulty: FaultyClient, expected: dict, fault
) -> None:
    faulty.fail("upsert", fault, on_call=3, times=2)

    report = sync(faulty, retries=2)

    assert report.status == "succeeded"
    assert faulty.injected["upsert"] == 2 and report.writes.retries == 2
    # Counted once per acknowledged write, however many times it was sent.
    assert report.writes.upserted == 40
    assert point_set(faulty) == expected


def test_upserts_failing_past_the_retries_fail_the_run_and_a_rerun_converges(
    faulty: FaultyClient, expected: dict
) -> None:
    faulty.fail("upsert", dropped_connection(applied=True), on_call=4, times=None)

    with pytest.raises(SinkUnavailable, match="no answer from Qdrant"):
        sync(faulty, retries=2)

    report = sync.last_report  # type: ignore[attr-defined]
    assert report.status == "failed"
    assert "SinkUnavailable" in report.reason
    stored = point_set(faulty)
    # Only what Qdrant acknowledged is counted, though more reached it.
    assert len(stored) > report.writes.upserted
    assert set(stored) < set(expected)

    faulty.heal()
    again = sync(faulty)
    assert again.status == "succeeded"
    assert point_set(faulty) == expected


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_error_is_terminal_and_not_retried(
    faulty: FaultyClient, expected: dict, status: int
) -> None:
    faulty.fail("upsert", http_status(status), on_call=2)

    with pytest.raises(SinkError, match=f"Qdrant answered HTTP {status}") as info:
        sync(faulty, retries=5)

    assert isinstance(info.value, TerminalError) and not isinstance(info.value, TransientError)
    report = sync.last_report  # type: ignore[attr-defined]
    # The refused request was not sent again; writes already queued were let finish.
    assert faulty.injected["upsert"] == 1
    assert (report.status, report.writes.retries) == ("failed", 0)
    assert f"HTTP {status}" in report.reason
    assert report.writes.upserted == len(point_set(faulty)) < 40

    faulty.heal()
    sync(faulty)
    assert point_set(faulty) == expected


@pytest.mark.parametrize("method", ["retrieve", "scroll", "delete", "batch_update_points"])
def test_reads_deletes_and_payload_writes_retry_too(
    faulty: FaultyClient, tmp_path: Path, method: str
) -> None:
    sync(faulty)
    # A second read where one chunk changed its metadata (payload write) and one is gone (delete).
    lines = CORPUS.read_text().splitlines()
    lines[0] = lines[0].replace('"_id"', '"tag": "new", "_id"', 1)
    smaller = tmp_path / "smaller.jsonl"
    smaller.write_text("\n".join(lines[:-1]) + "\n")
    expected_client = QdrantClient(":memory:")
    sync(expected_client, smaller)
    faulty.fail(method, timeout(), times=1)

    report = sync(faulty, smaller)

    assert report.status == "succeeded"
    assert faulty.injected[method] == 1 and report.writes.retries == 1
    assert (report.counts.payload_only, report.writes.deleted) == (1, 1)
    assert point_set(faulty) == point_set(expected_client)


def test_failure_while_reading_state_stops_before_writing_anything(
    faulty: FaultyClient, tmp_path: Path
) -> None:
    # The source has a stored point (a first sync of a source has no state to read).
    first = tmp_path / "first.jsonl"
    first.write_text(CORPUS.read_text().splitlines()[0] + "\n")
    sync(faulty, first)
    stored = point_set(faulty)
    before = faulty.calls.copy()
    faulty.fail("retrieve", http_status(500), times=None)

    with pytest.raises(SinkUnavailable, match="HTTP 500"):
        sync(faulty, retries=1)

    assert faulty.calls["retrieve"] - before["retrieve"] == 2
    assert faulty.calls["upsert"] == before["upsert"]
    assert point_set(faulty) == stored

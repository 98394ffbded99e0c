"""A sync on worker processes, wired as users run it (``sync.workers`` through ``build_syncer``):
the same plans, deletes, skipped records, counts and stored points as a one-process sync."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qdrant_client.models import Record, SparseVector

from connector.chunks import ChunkRecord
from connector.runs import RunRecord, read_progress
from connector.settings import load_settings
from connector.sources import Source
from connector.store.edge import EdgeClient
from connector.wiring import build_syncer
from tests.fakes import FakeDense, ListSource, chunk

CORPUS = [
    chunk(f"c{n}", f"Chunk {n} on shells {n % 7}, flutter and heat at Mach {n % 5}.", topic=n % 3)
    for n in range(20)
]


def sync(
    workdir: Path, workers: int, source: Source | None = None, dense: FakeDense | None = None
) -> tuple[RunRecord, dict[str, dict[str, Any]], dict[str, Any]]:
    """One recorded run into ``workdir``: its record, the stored points by chunk id (without what
    differs between runs: its id and clock) and its manifest."""
    settings = load_settings(
        None,
        {
            "state_dir": str(workdir / "state"),
            "source": {"path": str(workdir / "corpus.jsonl"), "name": "docs"},
            "sync": {"workers": workers, "batch_size": 8},
        },
    )
    client = EdgeClient(workdir / "qdrant")
    with build_syncer(settings, source=source, dense=[dense or FakeDense()], client=client) as job:
        record = job.run()
        assert record.workers == workers  # the sparse model ran on the pool
        points, _ = job.store.scroll(job.writer.collection, limit=1000, with_vectors=True)
    manifest = workdir / "state" / "runs" / record.run_id / "processing_summary.json"
    stored = dict(comparable(p) for p in points)
    assert multiprocessing.active_children() == []  # the pool ended with the run
    return record, stored, json.loads(manifest.read_text())


def comparable(point: Record) -> tuple[str, dict[str, Any]]:
    """A stored point's chunk id, and the point without what differs between runs (its run id
    and clock)."""
    assert point.payload is not None and isinstance(point.vector, dict)
    vectors = {
        name: sorted(zip(vector.indices, vector.values, strict=True))
        if isinstance(vector, SparseVector)
        else vector
        for name, vector in point.vector.items()
    }
    payload = {k: v for k, v in point.payload.items() if k not in {"run_id", "synced_at"}}
    return point.payload["chunk_id"], {"id": str(point.id), "payload": payload, "vector": vectors}


def edited(corpus: list[ChunkRecord]) -> list[ChunkRecord]:
    """``corpus`` with one text edited, one chunk's metadata changed, one chunk added (next to
    the edit: one window holds both chunks to encode) and one removed."""
    changed = list(corpus)
    changed[3] = chunk("c3", "Chunk 3, rewritten: panel flutter at Mach 3.", topic=0)
    changed[4] = chunk("c4", corpus[4].text, topic="moved")
    changed.insert(4, chunk("new", "A new chunk on buckling of shells.", topic=1))
    del changed[12]  # c11
    return changed


def test_an_incremental_sync_on_two_workers_plans_and_stores_as_one_process(
    tmp_path: Path,
) -> None:
    runs = {}
    for workers in (1, 2):
        workdir = tmp_path / str(workers)
        first, _, _ = sync(workdir, workers, ListSource(CORPUS))
        assert first.counts.encoded == 20
        dense = FakeDense()
        record, stored, manifest = sync(workdir, workers, ListSource(edited(CORPUS)), dense)

        # Only the edited and the new chunk are encoded; the moved one gets its payload
        # rewritten; the removed one is deleted after the whole read; the rest are skipped.
        assert dense.texts_encoded == 2
        assert record.totals() == manifest["counts"]
        counts = record.totals()
        assert (counts["chunks_seen"], counts["encoded"], counts["skipped_unchanged"]) == (
            20,
            2,
            17,
        )
        assert (counts["payload_only"], counts["upserted"], counts["deleted"]) == (1, 2, 1)
        assert record.writes.payloads_updated == 1
        assert stored["c4"]["payload"]["metadata"] == {"topic": "moved"}
        assert set(stored) == {c.chunk_id for c in edited(CORPUS)}
        assert manifest["performance"]["workers"] == workers
        runs[workers] = (counts, record.vectors_encoded, stored)

    assert runs[2] == runs[1]


BAD_LINES = [
    b'{"id": "x1", "text": "unterminated\n',
    b'{"id": "x2", "metadata": {}}\n',
    b'{"_id": "c7", "text": "a second chunk under id c7"}\n',
    b'{"id": "x3", "text": "caf\xe9 au lait"}\n',
]


def test_skipped_records_are_reported_alike_on_two_workers(tmp_path: Path) -> None:
    lines = [json.dumps({"_id": c.chunk_id, "text": c.text}).encode() + b"\n" for c in CORPUS]
    # The bad lines spread over the windows: each lands in another part of the pool's work.
    for offset, bad in enumerate(BAD_LINES):
        lines.insert(1 + offset * 6, bad)
    runs = {}
    for workers in (1, 2):
        workdir = tmp_path / str(workers)
        workdir.mkdir()
        (workdir / "corpus.jsonl").write_bytes(b"".join(lines))
        record, stored, manifest = sync(workdir, workers)

        assert record.status == "succeeded" and len(stored) == 20
        assert record.skips.by_kind == {
            "invalid_json": 1,
            "missing_text": 1,
            "duplicate_id": 1,
            "not_utf8": 1,
        }
        assert manifest["skipped"]["count"] == manifest["counts"]["skipped"] == 4
        skipped = [
            {**entry, "location": Path(entry["location"]).name}
            for entry in manifest["skipped"]["records"]
        ]
        assert {entry["location"] for entry in skipped} == {
            "corpus.jsonl:2",
            "corpus.jsonl:8",
            "corpus.jsonl:14",
            "corpus.jsonl:20",
        }
        stored = {
            chunk_id: point | {"payload": point["payload"] | {"source": None}}
            for chunk_id, point in stored.items()
        }
        runs[workers] = (record.totals(), skipped, stored)

    assert runs[2] == runs[1]


def test_the_live_progress_file_follows_a_run_on_two_workers(tmp_path: Path) -> None:
    seen: list[int] = []

    class Watched(ListSource):
        """Reads, between chunks, what a dashboard would see of the run."""

        def __iter__(self) -> Iterator[ChunkRecord]:
            for item in super().__iter__():
                live = read_progress(tmp_path / "state")
                assert live is not None and live.status == "running"
                seen.append(live.chunks_done)
                yield item

    corpus = [chunk(f"c{n}", f"Wing section {n} at Mach {n % 5}.") for n in range(200)]
    record, _, _ = sync(tmp_path, 2, Watched(corpus))

    # Whole windows at a time, while the source is still being read.
    assert seen == sorted(seen) and all(done % 8 == 0 for done in seen)
    assert seen[0] == 0 and seen[-1] > 0
    live = read_progress(tmp_path / "state")
    assert live is not None and (live.status, live.chunks_done) == ("succeeded", 200)
    assert live.run_id == record.run_id

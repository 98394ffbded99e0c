"""Hostile input: whatever a JSONL file holds, a sync never crashes, and every line is either
stored or reported (blank lines are counted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import QdrantClient

from connector.pipeline.syncer import SparseTarget, Syncer
from connector.search import Searcher
from connector.sources import JsonlFileSource
from connector.sparse.generator import SparseVectorGenerator
from connector.store import Store, Writer
from tests.fakes import FakeDense

IDS = st.sampled_from(["a", "b", "c", "d", "e", "1", "2"])  # few, so that ids repeat
TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=60).filter(
    lambda t: t.strip() != ""
)


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


@st.composite
def lines(draw: st.DrawFn) -> tuple[bytes, str, str | None, str | None]:
    """One line: its bytes, what it is (valid / bad / blank), its id and text when valid."""
    kind = draw(
        st.sampled_from(
            [
                "valid",
                "valid",
                "valid",
                "truncated",
                "garbage",
                "wrong_type",
                "empty_text",
                "no_id",
                "not_utf8",
                "blank",
                "array",
            ]
        )
    )
    chunk_id, text = draw(IDS), draw(TEXT)
    if kind == "valid":
        record: dict[str, Any] = {"id": chunk_id, "text": text}
        if draw(st.booleans()):
            record["metadata"] = {"n": draw(st.integers()), "s": draw(st.text(max_size=5))}
        return _dump(record), "valid", chunk_id, text
    if kind == "truncated":
        return _dump({"id": chunk_id, "text": text})[:-1], "bad", None, None
    if kind == "garbage":
        return b"not json: " + draw(st.binary(max_size=30)).replace(b"\n", b""), "bad", None, None
    if kind == "wrong_type":
        value = draw(st.one_of(st.integers(), st.booleans(), st.lists(st.integers()), st.none()))
        return _dump({"id": chunk_id, "text": value}), "bad", None, None
    if kind == "empty_text":
        return (
            _dump({"id": chunk_id, "text": draw(st.sampled_from(["", " ", "\t\n"]))}),
            "bad",
            None,
            None,
        )
    if kind == "no_id":
        return _dump({"text": text}), "bad", None, None
    if kind == "not_utf8":
        return b'{"id": "x", "text": "caf\xe9"}', "bad", None, None
    if kind == "array":
        return _dump([chunk_id, text]), "bad", None, None
    return draw(st.sampled_from([b"", b"  ", b"\t"])), "blank", None, None


def _sync(path: Path) -> tuple[Any, QdrantClient]:
    client = QdrantClient(":memory:")
    sink = Writer(Store(client), "chunks", batch_size=7)
    target = SparseTarget(SparseVectorGenerator(), "qdrant-bm25", "qdrant-bm25", idf=True)
    report = Syncer(sink, [FakeDense()], target, batch_size=5).run(
        JsonlFileSource(path, name="docs")
    )
    return report, client


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(lines(), max_size=25))
def test_sync_never_crashes_and_every_line_is_stored_or_reported(
    tmp_path: Path, generated: list[tuple[bytes, str, str | None, str | None]]
) -> None:
    path = tmp_path / "input.jsonl"
    path.write_bytes(b"".join(raw + b"\n" for raw, *_ in generated))

    report, client = _sync(path)

    first_text: dict[str, str] = {}
    duplicates = bad = blank = 0
    for _, kind, chunk_id, text in generated:
        if kind == "valid":
            assert chunk_id is not None and text is not None
            if chunk_id in first_text:
                duplicates += 1
            else:
                first_text[chunk_id] = text
        elif kind == "bad":
            bad += 1
        else:
            blank += 1
    points, _ = client.scroll("chunks", limit=1000, with_payload=True)
    stored = {p.payload["chunk_id"]: p.payload["text"] for p in points}
    assert report.status == "succeeded"
    assert stored == first_text
    assert report.skips.count == bad + duplicates
    assert report.skips.by_kind.get("duplicate_id", 0) == duplicates
    assert report.skips.blank_lines == blank
    assert len(stored) + report.skips.count + report.skips.blank_lines == len(generated)
    reported_lines = sorted(int(r["location"].rsplit(":", 1)[1]) for r in report.skips.records)
    assert len(set(reported_lines)) == report.skips.count
    for record in report.skips.records:
        assert record["reason"] and record["kind"]


def test_awkward_but_valid_text_is_stored_and_found(tmp_path: Path) -> None:
    records = [
        {"id": "long-token", "text": "turbine " + "x" * 200_000 + " blade"},
        {"id": "cjk", "text": "超音速の境界層遷移に関する実験的研究" * 50},
        {"id": "thai", "text": "การศึกษาการไหลแบบความเร็วเหนือเสียง"},
        {"id": "control", "text": "nozzle\x00flow\x1b[31m with \x07bells\u200b and\ufeffmarks"},
        {"id": "emoji", "text": "🚀 rocket nozzle 🔥 thrust"},
    ]
    path = tmp_path / "input.jsonl"
    path.write_bytes(b"".join(_dump(r) + b"\n" for r in records))

    report, client = _sync(path)

    assert (report.status, report.counts.chunks_seen, report.skips.count) == ("succeeded", 5, 0)
    points, _ = client.scroll("chunks", limit=10, with_payload=True)
    assert {p.payload["chunk_id"]: p.payload["text"] for p in points} == {
        r["id"]: r["text"] for r in records
    }
    target = SparseTarget(SparseVectorGenerator(), "qdrant-bm25", "qdrant-bm25", idf=True)
    hits = Searcher(Store(client), "chunks", [FakeDense()], target).search(
        "turbine blade", mode="sparse", limit=1
    )
    assert hits[0].chunk_id == "long-token"


def test_a_50_mb_line_is_skipped_and_the_rest_synced(tmp_path: Path) -> None:
    path = tmp_path / "input.jsonl"
    with path.open("wb") as handle:
        handle.write(_dump({"id": "before", "text": "supersonic flow"}) + b"\n")
        handle.write(b'{"id": "huge", "text": "' + b"word " * (10 * 1024 * 1024) + b'"}\n')
        handle.write(_dump({"id": "after", "text": "hypersonic flow"}) + b"\n")

    report, client = _sync(path)

    assert report.status == "succeeded"
    assert report.skips.by_kind == {"line_too_long": 1}
    assert report.skips.records[0]["location"].endswith("input.jsonl:2")
    points, _ = client.scroll("chunks", limit=10, with_payload=True)
    assert {p.payload["chunk_id"] for p in points} == {"before", "after"}

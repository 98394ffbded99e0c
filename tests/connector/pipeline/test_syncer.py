"""Sync behaviour against the embedded Qdrant, with a fake dense model and the real BM25."""

from __future__ import annotations

import gc
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from connector.chunks import point_id
from connector.dense_plugins import RateEncoder
from connector.errors import CollectionMismatch, SourceError, UnsafeDelete
from connector.pipeline.syncer import SparseTarget, Syncer
from connector.sparse.bm25 import Bm25
from connector.sparse.generator import SparseVectorGenerator
from connector.store import Store, Writer
from connector.store.edge import EdgeClient
from tests.fakes import FakeDense, ListSource, chunk

CORPUS = [
    chunk("a", "Boundary layer transition on a flat plate at supersonic speed.", topic="flow"),
    chunk("b", "Heat transfer to a blunt body in hypersonic flight.", topic="heat"),
    chunk("c", "Buckling of thin cylindrical shells under axial compression.", topic="structures"),
    chunk("d", "Flutter of a cantilever wing in a subsonic wind tunnel.", topic="aeroelastic"),
]


@pytest.fixture(params=[1, 2])
def workers(request: pytest.FixtureRequest) -> Iterator[int]:
    """Processes that run the sparse model (two: a pool); none is left when the test ends."""
    yield request.param
    assert multiprocessing.active_children() == []


@pytest.fixture(params=["local", "edge"])
def sink(tmp_path: Path, request: pytest.FixtureRequest):
    # The same checks run on both embedded engines.
    path = tmp_path / "qdrant"
    client = QdrantClient(path=str(path)) if request.param == "local" else EdgeClient(path)
    store = Store(client)
    yield Writer(store, "chunks", batch_size=3)
    store.close()


def bm25_target() -> SparseTarget:
    return SparseTarget(
        generator=SparseVectorGenerator(),
        model_name="qdrant-bm25",
        vector_name="qdrant-bm25",
        idf=True,
    )


def syncer(sink: Writer, dense: FakeDense, **kwargs) -> Syncer:
    return Syncer(sink, [dense], bm25_target(), batch_size=2, **kwargs)


def stored(sink: Writer) -> dict[str, dict]:
    points, _ = sink.store.scroll("chunks", limit=1000, with_vectors=True)
    return {
        p.payload["chunk_id"]: {"payload": p.payload, "vector": p.vector, "id": str(p.id)}
        for p in points
    }


def test_first_sync_writes_one_hybrid_point_per_chunk(sink: Writer) -> None:
    dense = FakeDense()
    report = syncer(sink, dense).run(ListSource(CORPUS))

    assert (report.counts.chunks_seen, report.counts.encoded, report.writes.upserted) == (4, 4, 4)
    assert report.status == "succeeded"
    points = stored(sink)
    assert set(points) == {"a", "b", "c", "d"}
    a = points["a"]
    assert a["id"] == point_id("memory://test", "a")
    assert set(a["vector"]) == {"fake", "qdrant-bm25"}
    assert len(a["vector"]["fake"]) == 16
    expected_sparse = Bm25().encode_documents([CORPUS[0].text])[0]
    assert sorted(a["vector"]["qdrant-bm25"].indices) == sorted(expected_sparse.indices)
    payload = a["payload"]
    assert payload["text"] == CORPUS[0].text
    assert payload["source"] == "memory://test"
    assert payload["metadata"] == {"topic": "flow"}
    assert len(payload["content_hash"]) == 64
    assert set(payload["encoded_with"]) == {"fake", "qdrant-bm25"}


def test_collection_has_named_dense_and_idf_sparse_vectors(sink: Writer) -> None:
    syncer(sink, FakeDense()).run(ListSource(CORPUS))
    params = sink.store.info("chunks").config.params
    assert params.vectors["fake"].size == 16
    assert params.vectors["fake"].distance.value == "Cosine"
    assert params.sparse_vectors["qdrant-bm25"].modifier.value == "idf"
    recorded = sink.store.metadata("chunks")["connector"]["vectors"]
    assert recorded["qdrant-bm25"]["signature"] == Bm25().signature


def test_resync_of_unchanged_input_encodes_and_writes_nothing(sink: Writer) -> None:
    syncer(sink, FakeDense()).run(ListSource(CORPUS))
    before = stored(sink)
    dense = FakeDense()
    report = syncer(sink, dense).run(ListSource(CORPUS))
    assert dense.calls == 0
    counts, writes = report.counts, report.writes
    assert (counts.encoded, counts.skipped_unchanged, writes.upserted, writes.deleted) == (
        0,
        4,
        0,
        0,
    )
    assert stored(sink) == before


def test_edited_chunk_alone_is_reencoded(sink: Writer) -> None:
    syncer(sink, FakeDense()).run(ListSource(CORPUS))
    edited = [
        *CORPUS[:2],
        chunk("c", "Buckling of thick spherical shells.", topic="structures"),
        CORPUS[3],
    ]
    dense = FakeDense()
    report = syncer(sink, dense).run(ListSource(edited))
    assert dense.texts_encoded == 1
    counts = report.counts
    assert (counts.encoded, counts.skipped_unchanged, report.writes.upserted) == (1, 3, 1)
    assert stored(sink)["c"]["payload"]["text"] == "Buckling of thick spherical shells."


def test_metadata_change_rewrites_payload_without_encoding(sink: Writer) -> None:
    syncer(sink, FakeDense()).run(ListSource(CORPUS))
    changed = [chunk("a", CORPUS[0].text, topic="transition"), *CORPUS[1:]]
    dense = FakeDense()
    report = syncer(sink, dense).run(ListSource(changed))
    assert dense.calls == 0
    assert report.counts.payload_only == 1
    point = stored(sink)["a"]
    assert point["payload"]["metadata"] == {"topic": "transition"}
    assert set(point["vector"]) == {"fake", "qdrant-bm25"}


def test_removed_chunk_is_deleted_after_the_whole_read(sink: Writer, workers: int) -> None:
    syncer(sink, FakeDense(), workers=workers).run(ListSource(CORPUS))
    report = syncer(sink, FakeDense(), max_delete_fraction=0.25, workers=workers).run(
        ListSource(CORPUS[:3])
    )
    assert report.writes.deleted == 1
    assert set(stored(sink)) == {"a", "b", "c"}


def test_truncated_read_over_the_delete_limit_deletes_nothing_unless_allowed(
    sink: Writer, workers: int
) -> None:
    syncer(sink, FakeDense(), workers=workers).run(ListSource(CORPUS))

    with pytest.raises(UnsafeDelete) as info:
        syncer(sink, FakeDense(), max_delete_fraction=0.25, workers=workers).run(
            ListSource(CORPUS[:2])
        )

    assert "would delete 2 of its 4 stored points (50%, over the limit of 25%" in str(info.value)
    assert "--allow-mass-delete" in str(info.value)
    assert set(stored(sink)) == {"a", "b", "c", "d"}
    report = syncer(sink, FakeDense(), allow_mass_delete=True, workers=workers).run(
        ListSource(CORPUS[:2])
    )
    assert report.writes.deleted == 2 and set(stored(sink)) == {"a", "b"}


def test_other_sources_points_are_never_deleted(sink: Writer) -> None:
    syncer(sink, FakeDense()).run(ListSource(CORPUS, name="one"))
    syncer(sink, FakeDense()).run(ListSource(CORPUS[:1], name="two"))
    assert sink.store.count("chunks") == 5


def test_empty_source_deletes_nothing_unless_allowed(sink: Writer, workers: int) -> None:
    syncer(sink, FakeDense(), workers=workers).run(ListSource(CORPUS))
    with pytest.raises(UnsafeDelete, match="yielded no chunks"):
        syncer(sink, FakeDense(), workers=workers).run(ListSource([]))
    assert sink.store.count("chunks") == 4
    report = syncer(sink, FakeDense(), allow_mass_delete=True, workers=workers).run(ListSource([]))
    assert report.writes.deleted == 4
    assert sink.store.count("chunks") == 0


def test_failed_read_keeps_stored_points_and_deletes_nothing(sink: Writer, workers: int) -> None:
    syncer(sink, FakeDense(), workers=workers).run(ListSource(CORPUS))

    class Failing(ListSource):
        def __iter__(self):
            yield CORPUS[0]
            raise SourceError("corpus.jsonl:2", "invalid JSON")

    with pytest.raises(SourceError, match="corpus.jsonl:2"):
        syncer(sink, FakeDense(), workers=workers).run(Failing(CORPUS))
    assert set(stored(sink)) == {"a", "b", "c", "d"}
    # The heap a run leaves alone (gc.freeze) is collectable again once it ends, however.
    assert gc.get_freeze_count() == 0


def test_duplicate_chunk_id_is_skipped_and_reported_first_one_wins(sink: Writer) -> None:
    dup = [*CORPUS, chunk("b", "Another text under the same id.")]
    dup[-1].location = "corpus.jsonl:5"

    report = syncer(sink, FakeDense()).run(ListSource(dup))

    assert (report.status, report.counts.chunks_seen, report.skips.count) == ("succeeded", 4, 1)
    assert report.skips.by_kind == {"duplicate_id": 1}
    assert report.skips.records == [
        {
            "location": "corpus.jsonl:5",
            "kind": "duplicate_id",
            "reason": "duplicate chunk id 'b' (already read earlier in this source)",
        }
    ]
    assert stored(sink)["b"]["payload"]["text"] == CORPUS[1].text


def test_duplicate_chunk_id_fails_naming_the_place_when_strict(sink: Writer) -> None:
    dup = [*CORPUS, chunk("b", "Another text under the same id.")]
    dup[-1].location = "corpus.jsonl:5"
    with pytest.raises(SourceError, match=r"corpus.jsonl:5: duplicate chunk id 'b'"):
        syncer(sink, FakeDense(), strict=True).run(ListSource(dup))


def test_changed_dense_model_reencodes_only_its_vector(sink: Writer) -> None:
    syncer(sink, FakeDense(version="1")).run(ListSource(CORPUS))
    before = stored(sink)
    dense = FakeDense(version="2")
    report = syncer(sink, dense).run(ListSource(CORPUS))
    assert dense.texts_encoded == 4
    writes = report.writes
    assert (report.counts.encoded, writes.upserted, writes.vectors_updated) == (4, 0, 4)
    assert report.vectors_encoded == {"fake": 4}  # BM25 was not recomputed
    after = stored(sink)
    assert after["a"]["payload"]["encoded_with"]["fake"] == "fake|dim=16|v=2"
    assert after["a"]["vector"]["qdrant-bm25"] == before["a"]["vector"]["qdrant-bm25"]


def test_added_ensemble_model_gets_its_own_vector_backfilled(sink: Writer) -> None:
    Syncer(sink, [FakeDense("one")], bm25_target()).run(ListSource(CORPUS))
    first, second = FakeDense("one"), FakeDense("two", dim=8)
    report = Syncer(sink, [first, second], bm25_target()).run(ListSource(CORPUS))
    assert (first.texts_encoded, second.texts_encoded) == (0, 4)
    assert report.vectors_encoded == {"two": 4}
    assert set(stored(sink)["d"]["vector"]) == {"one", "two", "qdrant-bm25"}


def test_vector_of_another_size_is_a_clear_mismatch(sink: Writer) -> None:
    syncer(sink, FakeDense(dim=16)).run(ListSource(CORPUS))
    with pytest.raises(CollectionMismatch, match="'fake' has size 16, the model gives 32"):
        syncer(sink, FakeDense(dim=32)).run(ListSource(CORPUS))


def test_sparse_off_writes_dense_only(sink: Writer) -> None:
    report = Syncer(sink, [FakeDense()], None).run(ListSource(CORPUS))
    assert report.writes.upserted == 4
    assert set(stored(sink)["a"]["vector"]) == {"fake"}


def test_sparse_switched_on_later_backfills_sparse_only(sink: Writer) -> None:
    Syncer(sink, [FakeDense()], None).run(ListSource(CORPUS))
    dense = FakeDense()
    report = syncer(sink, dense).run(ListSource(CORPUS))
    assert dense.calls == 0
    assert report.vectors_encoded == {"qdrant-bm25": 4}
    assert (report.writes.upserted, report.writes.vectors_updated) == (0, 4)
    assert set(stored(sink)["b"]["vector"]) == {"fake", "qdrant-bm25"}


class BrokenSparse:
    """A sparse model whose weights cannot load; its stemmer and hash still work."""

    signature = "qdrant-bm25|fastembed|english|k=1.2|b=0.75|avg_len=256|max_len=40"

    def __init__(self) -> None:
        self.inner = Bm25()

    def encode_documents(self, texts):
        from connector.errors import ModelError

        raise ModelError("sparse model 'qdrant-bm25': weights missing")

    def encode_query(self, text):
        return self.inner.encode_query(text)

    def term_ids(self, term):
        return self.inner.term_ids(term)


def test_metadata_fallback_is_searchable_recorded_and_retried(sink: Writer) -> None:
    from connector.search import Searcher
    from connector.sparse.generator import ModelRegistry

    broken = SparseTarget(
        generator=SparseVectorGenerator(ModelRegistry(encoders={"qdrant-bm25": BrokenSparse()})),
        model_name="qdrant-bm25",
        vector_name="qdrant-bm25",
        idf=True,
    )
    records = [
        chunk("p", "Panel flutter at high Mach number.", sparse_features={"Turbulence": 1.5}),
        *CORPUS,
    ]
    report = Syncer(sink, [FakeDense()], broken).run(ListSource(records))
    assert report.sparse.fallbacks == 5 and "weights missing" in report.sparse.fallback_reason
    points = stored(sink)
    assert points["p"]["payload"]["sparse_fallback"]["reason"].startswith("model unavailable")
    assert "qdrant-bm25" not in points["a"]["vector"]  # no metadata, no vector

    hits = Searcher(sink.store, "chunks", [FakeDense()], bm25_target()).search(
        "turbulence", mode="sparse"
    )
    assert [hit.chunk_id for hit in hits] == ["p"]

    dense = FakeDense()
    report = syncer(sink, dense).run(ListSource(records))
    assert dense.calls == 0 and report.vectors_encoded == {"qdrant-bm25": 5}
    assert report.sparse.fallbacks == 0
    points = stored(sink)
    assert "sparse_fallback" not in points["p"]["payload"]
    assert "qdrant-bm25" in points["a"]["vector"]


def test_a_source_without_a_skip_log_syncs(sink: Writer) -> None:
    class Plain:
        name = "plain://source"
        total_bytes = None
        bytes_read = 0

        def __iter__(self):
            yield from CORPUS

    report = syncer(sink, FakeDense()).run(Plain())
    assert (report.status, report.writes.upserted, report.skips.count) == ("succeeded", 4, 0)


class FailingDense(FakeDense):
    """Fails on its ``fail_on``-th call."""

    def __init__(self, fail_on: int, error: Exception) -> None:
        super().__init__()
        self.fail_on = fail_on
        self.error = error

    def encode(self, texts):
        if self.calls + 1 == self.fail_on:
            self.calls += 1
            raise self.error
        return super().encode(texts)


def test_a_failing_stage_keeps_earlier_windows_deletes_nothing_and_raises_its_error(
    sink: Writer,
) -> None:
    many = [chunk(f"c{i}", f"Shock wave number {i} on a wedge.") for i in range(20)]
    syncer(sink, FakeDense()).run(ListSource(many))
    error = RuntimeError("the model broke")

    run = syncer(sink, FailingDense(fail_on=3, error=error))
    with pytest.raises(RuntimeError) as info:
        run.run(ListSource([chunk(f"n{i}", f"New text {i}.") for i in range(20)]))

    assert info.value is error
    report = run.record
    assert (
        report is not None and report.status == "failed" and "RuntimeError" in (report.reason or "")
    )
    # The two windows before the failing one were written, as in a one-thread run; nothing was
    # deleted though the old chunks are missing from this read.
    assert report.writes.upserted == 4 and report.writes.deleted == 0
    assert len(stored(sink)) == 24


def test_overlapped_and_in_turn_runs_store_the_same_points(tmp_path: Path) -> None:
    def point_set(overlap: bool) -> dict:
        store = Store(QdrantClient(path=str(tmp_path / f"q{overlap}")))
        writer = Writer(store, "chunks", batch_size=3)
        try:
            corpus = [chunk(f"c{i}", f"Jet noise at station {i}.", n=i) for i in range(25)]
            source = ListSource([*corpus, corpus[4], chunk("late", "")])
            report = syncer(writer, FakeDense(), overlap=overlap).run(source)
            points = stored(writer)
        finally:
            store.close()
        for point in points.values():
            del point["payload"]["run_id"], point["payload"]["synced_at"]
        return {"points": points, "counts": report.totals(), "vectors": report.vectors_encoded}

    assert point_set(True) == point_set(False)


@pytest.mark.parametrize("overlap", [True, False])
def test_the_source_is_read_while_the_dense_model_encodes_only_when_overlapped(
    sink: Writer, overlap: bool
) -> None:
    encoding: list[tuple[float, float]] = []
    reads: list[float] = []

    class TimedDense(RateEncoder):
        def encode(self, texts):
            started = time.perf_counter()
            try:
                return super().encode(texts)
            finally:
                encoding.append((started, time.perf_counter()))

    class TimedSource(ListSource):
        def __iter__(self):
            for item in super().__iter__():
                reads.append(time.perf_counter())
                yield item

    many = [chunk(f"c{i}", f"Wake of a sphere number {i}.") for i in range(24)]
    syncer(sink, TimedDense(dim=16, rate=100, batch_size=8), overlap=overlap).run(TimedSource(many))

    during = [t for t in reads if any(start < t < end for start, end in encoding)]
    assert bool(during) is overlap

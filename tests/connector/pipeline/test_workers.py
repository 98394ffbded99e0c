"""The sparse model on worker processes: the same points as in-process, and no orphan workers."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from connector.cli import _overrides, _parser
from connector.errors import ConfigError, SinkError
from connector.pipeline._workers import AUTO_MAX_WORKERS, AUTO_MIN_BYTES, auto_workers
from connector.pipeline.syncer import SparseTarget, Syncer
from connector.settings import load_settings
from connector.sparse.bm25 import Bm25
from connector.sparse.generator import ModelRegistry, SparseVectorGenerator
from connector.store import Store, Writer
from connector.store.edge import EdgeClient
from tests.fakes import FakeDense, ListSource, chunk

RUN_ID = "8c3ce8a6-5e0f-4b8e-9d0e-1f2a3b4c5d6e"
CORPUS = [
    chunk(
        f"c{n}",
        f"Chunk {n} on boundary layers, shells {n % 7}, flutter and heat at Mach {n % 5}.",
        topic=str(n % 3),
        sparse_features={"Turbulence": 1.5},
    )
    for n in range(23)
]


class RaisesOnOne:
    """BM25 that fails on any batch holding the text of chunk ``c5`` (picklable: it travels
    to the workers once, with the registry)."""

    def __init__(self) -> None:
        self.inner = Bm25()

    @property
    def signature(self) -> str:
        return self.inner.signature

    def encode_documents(self, texts):
        if any(text.startswith("Chunk 5 ") for text in texts):
            raise ValueError("no vector for this one")
        return self.inner.encode_documents(texts)

    def encode_query(self, text):
        return self.inner.encode_query(text)

    def term_ids(self, term):
        return self.inner.term_ids(term)


def target(registry: ModelRegistry | None = None) -> SparseTarget:
    return SparseTarget(
        generator=SparseVectorGenerator(registry),
        model_name="qdrant-bm25",
        vector_name="qdrant-bm25",
        idf=True,
    )


def sync(tmp_path: Path, workers: int, batch_size: int = 8, registry=None):
    """A first sync of CORPUS; the record and the stored points by chunk id."""
    store = Store(EdgeClient(tmp_path / f"qdrant-{workers}-{batch_size}"))
    try:
        writer = Writer(store, "chunks", batch_size=5)
        syncer = Syncer(
            writer, [FakeDense()], target(registry), batch_size=batch_size, workers=workers
        )
        record = syncer.run(ListSource(CORPUS), run_id=RUN_ID)
        points, _ = store.scroll("chunks", limit=1000, with_vectors=True)
    finally:
        store.close()
    stored = {
        p.payload["chunk_id"]: (
            str(p.id),
            {k: v for k, v in p.payload.items() if k != "synced_at"},  # the clock moved on
            sorted(
                zip(p.vector["qdrant-bm25"].indices, p.vector["qdrant-bm25"].values, strict=True)
            ),
        )
        for p in points
    }
    return record, stored


def test_two_workers_store_what_one_process_stores(tmp_path: Path) -> None:
    one, in_process = sync(tmp_path, 1)
    two, pooled = sync(tmp_path, 2)

    assert pooled == in_process
    assert (two.counts, two.writes.upserted, two.sparse.fallbacks) == (
        one.counts,
        one.writes.upserted,
        one.sparse.fallbacks,
    )
    assert (one.workers, two.workers) == (1, 2)
    summary = two.summary().performance
    assert summary is not None and summary.workers == 2
    assert multiprocessing.active_children() == []


def test_a_chunk_that_fails_in_a_worker_falls_back_as_in_process(tmp_path: Path) -> None:
    registry = ModelRegistry(encoders={"qdrant-bm25": RaisesOnOne()})
    # One chunk per batch in-process, one per part in the pool (three workers: the store's
    # writer and two for the sparse model): the same batches fail.
    one, in_process = sync(tmp_path, 1, batch_size=1, registry=registry)
    two, pooled = sync(tmp_path, 3, batch_size=2, registry=registry)

    assert pooled == in_process
    assert one.sparse.fallbacks == two.sparse.fallbacks == 1
    assert two.sparse.fallback_reason == one.sparse.fallback_reason == "ValueError on cpu"
    assert (
        pooled["c5"][1]["sparse_fallback"]["reason"]
        == (in_process["c5"][1]["sparse_fallback"]["reason"])
    )
    assert multiprocessing.active_children() == []


class FailingWriter(Writer):
    def submit(self, batch) -> None:  # type: ignore[override]
        raise SinkError("refused")


def stopped_run(tmp_path: Path, writer: type[Writer], source: ListSource, error: type) -> str:
    """The status of a run with two workers that ``error`` stops."""
    store = Store(EdgeClient(tmp_path / "qdrant"))
    try:
        syncer = Syncer(writer(store, "chunks"), [FakeDense()], target(), batch_size=4, workers=2)
        with pytest.raises(error):
            syncer.run(source)
    finally:
        store.close()
    assert syncer.record is not None
    return syncer.record.status


def test_the_pool_is_gone_after_a_failed_run(tmp_path: Path) -> None:
    assert stopped_run(tmp_path, FailingWriter, ListSource(CORPUS), SinkError) == "failed"
    assert multiprocessing.active_children() == []


def test_workers_setting_and_flag(tmp_path: Path) -> None:
    assert load_settings(None, {}).sync.workers is None  # decided per run: auto_workers
    with pytest.raises(ConfigError, match="workers"):
        load_settings(None, {"sync": {"workers": 0}})
    overrides = _overrides(_parser().parse_args(["sync", "--workers", "3"]))
    assert load_settings(None, overrides).sync.workers == 3


class StopsMidway(ListSource):
    """Ctrl-C after the first windows went to the workers."""

    def __iter__(self):
        for n, record in enumerate(super().__iter__()):
            if n == 12:
                raise KeyboardInterrupt
            yield record


def test_the_pool_is_gone_after_ctrl_c(tmp_path: Path) -> None:
    assert stopped_run(tmp_path, Writer, StopsMidway(CORPUS), KeyboardInterrupt) == "interrupted"
    assert multiprocessing.active_children() == []


class DiesOnOne(RaisesOnOne):
    """Kills its worker process on chunk ``c5``'s text (only ever run in a worker)."""

    def encode_documents(self, texts):
        if any(text.startswith("Chunk 5 ") for text in texts):
            os._exit(1)
        return self.inner.encode_documents(texts)


def test_a_dead_worker_falls_back_to_metadata_and_the_run_goes_on(tmp_path: Path) -> None:
    registry = ModelRegistry(encoders={"qdrant-bm25": DiesOnOne()})
    record, stored = sync(tmp_path, 2, batch_size=2, registry=registry)

    assert record.status == "succeeded" and len(stored) == len(CORPUS)
    assert record.sparse.fallbacks > 0
    assert record.sparse.fallback_reason.startswith("model unavailable: sparse worker failed")
    assert stored["c5"][1]["sparse_fallback"]["reason"].startswith("model unavailable")
    assert stored["c0"][1].get("sparse_fallback") is None  # before the worker died
    assert multiprocessing.active_children() == []


def test_by_default_a_large_or_unsized_source_gets_all_cores_but_one_a_small_one_none() -> None:
    cores = max(1, min(len(os.sched_getaffinity(0)) - 1, AUTO_MAX_WORKERS))
    assert auto_workers(AUTO_MIN_BYTES - 1) == 1
    assert auto_workers(AUTO_MIN_BYTES) == auto_workers(None) == cores


def test_a_run_with_workers_unset_records_what_it_chose(tmp_path: Path) -> None:
    store = Store(EdgeClient(tmp_path / "qdrant"))
    try:
        syncer = Syncer(Writer(store, "chunks"), [FakeDense()], target(), workers=None)
        small = ListSource(CORPUS)
        small.total_bytes = 2_000
        assert syncer.run(small).workers == 1
    finally:
        store.close()

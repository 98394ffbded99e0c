"""Search over a synced collection on both embedded engines: fusion choice, dense feedback."""

from __future__ import annotations

from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from connector.errors import ConfigError, SinkError
from connector.pipeline.syncer import SparseTarget, Syncer
from connector.search import Searcher
from connector.sparse.generator import SparseVectorGenerator
from connector.store import Store, Writer
from connector.store.edge import EdgeClient
from tests.fakes import FakeDense, ListSource, chunk

CORPUS = [
    chunk("slab", "alpha gamma"),
    chunk("beta", "alpha beta beta beta"),
    chunk("gamma", "gamma"),
    chunk("shell", "buckling of cylindrical shells under axial compression"),
    chunk("plate", "boundary layer transition on a flat plate"),
]


@pytest.fixture(params=["local", "edge"])
def store(tmp_path: Path, request: pytest.FixtureRequest):
    path = tmp_path / "qdrant"
    client = QdrantClient(path=str(path)) if request.param == "local" else EdgeClient(path)
    store = Store(client)
    yield store
    store.close()


def bm25() -> SparseTarget:
    return SparseTarget(SparseVectorGenerator(), "qdrant-bm25", "qdrant-bm25", idf=True)


@pytest.fixture
def dense() -> FakeDense:
    return FakeDense(dim=512)


@pytest.fixture
def synced(store: Store, dense: FakeDense) -> Store:
    Syncer(Writer(store, "chunks"), [dense], bm25()).run(ListSource(CORPUS))
    return store


def ids(hits) -> list[str]:
    return [hit.chunk_id for hit in hits]


@pytest.mark.parametrize("fusion", ["dbsf", "rrf"])
def test_both_fusions_rank_the_matching_chunk_first(
    synced: Store, dense: FakeDense, fusion: str
) -> None:
    searcher = Searcher(synced, "chunks", [dense], bm25(), fusion=fusion)
    hits = searcher.search("cylindrical shells buckling", limit=3)
    assert ids(hits)[0] == "shell"
    assert hits[0].source == "memory://test"


def test_fusions_score_differently(synced: Store, dense: FakeDense) -> None:
    rrf = Searcher(synced, "chunks", [dense], bm25(), fusion="rrf").search("flat plate transition")
    dbsf = Searcher(synced, "chunks", [dense], bm25(), fusion="dbsf").search(
        "flat plate transition"
    )
    assert ids(rrf)[0] == ids(dbsf)[0] == "plate"
    # Qdrant's RRF gives rank r (from 0) 1 / (r + 2) per list: first in both lists is 1.0.
    assert rrf[0].score == pytest.approx(1.0)
    assert dbsf[0].score != pytest.approx(rrf[0].score)


def test_unknown_fusion_is_a_config_error(synced: Store, dense: FakeDense) -> None:
    with pytest.raises(ConfigError, match="fusion"):
        Searcher(synced, "chunks", [dense], bm25(), fusion="sum")  # type: ignore[arg-type]


def test_dense_feedback_moves_the_query_towards_its_first_hit(
    synced: Store, dense: FakeDense
) -> None:
    plain = Searcher(synced, "chunks", [dense], bm25()).search("alpha", mode="dense", limit=3)
    assert ids(plain)[:2] == ["slab", "beta"]  # "gamma" shares no word with the query

    refined = Searcher(
        synced, "chunks", [dense], bm25(), feedback_docs=1, feedback_weight=1.0
    ).search("alpha", mode="dense", limit=3)
    # The first hit ("alpha gamma") pulls the query towards "gamma", past "alpha beta beta beta".
    assert ids(refined) == ["slab", "gamma", "beta"]


def test_feedback_leaves_sparse_mode_alone(synced: Store, dense: FakeDense) -> None:
    plain = Searcher(synced, "chunks", [dense], bm25()).search("gamma", mode="sparse")
    refined = Searcher(synced, "chunks", [dense], bm25(), feedback_docs=2).search(
        "gamma", mode="sparse"
    )
    assert [(h.chunk_id, h.score) for h in plain] == [(h.chunk_id, h.score) for h in refined]


def test_stopword_only_sparse_query_finds_nothing(synced: Store, dense: FakeDense) -> None:
    assert Searcher(synced, "chunks", [dense], bm25()).search("the of and", mode="sparse") == []


def test_sparse_mode_without_sparse_model_is_a_config_error(
    synced: Store, dense: FakeDense
) -> None:
    with pytest.raises(ConfigError, match="sparse is off"):
        Searcher(synced, "chunks", [dense], None).search("gamma", mode="sparse")


def test_missing_collection_says_to_sync_first(store: Store, dense: FakeDense) -> None:
    with pytest.raises(SinkError, match="run `connector sync` first"):
        Searcher(store, "chunks", [dense], bm25()).search("gamma")

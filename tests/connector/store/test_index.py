"""``qdrant.index``: how the chunk collection is stored and indexed, on the edge engine and on a
server; the deferred HNSW build of a first sync."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import models as qm

from connector.chunks import ChunkRecord
from connector.errors import ConfigError, SourceError
from connector.pipeline.syncer import SparseTarget, Syncer
from connector.settings import IndexSettings, load_settings
from connector.sparse.generator import SparseVectorGenerator
from connector.store import CollectionLayout, Store, Writer
from connector.store._rebuild import rebuild_collection
from connector.store._schema import create_aliased_chunk_collection
from connector.store.edge import EdgeClient
from connector.wiring import open_store
from tests.connector.store.servers import ServerLike
from tests.fakes import FakeDense, ListSource, chunk

INT8 = qm.ScalarQuantization(
    scalar=qm.ScalarQuantizationConfig(type=qm.ScalarType.INT8, always_ram=True)
)
LAYOUT = CollectionLayout(dense={"fake": 16}, sparse={"qdrant-bm25": True})


# -- settings ----------------------------------------------------------------------------------


def test_defaults_keep_vectors_on_disk_quantized_and_defer_the_build() -> None:
    index = load_settings(None, {"qdrant": {"engine": "edge"}}).qdrant.index
    assert (index.on_disk_vectors, index.on_disk_payload) == (True, True)
    assert (index.m, index.ef_construct, index.hnsw_ef) == (16, 100, None)
    assert (index.quantization, index.deferred_build) == ("int8", True)
    assert index.max_segment_mb is None  # the engine's: 128 MB on edge, a server's own


def test_index_keys_are_checked_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONNECTOR_QDRANT__INDEX__M", "32")
    index = load_settings(None, {"qdrant": {"engine": "edge", "index": {"hnsw_ef": 64}}}).qdrant
    assert (index.index.m, index.index.hnsw_ef) == (32, 64)
    monkeypatch.delenv("CONNECTOR_QDRANT__INDEX__M")
    with pytest.raises(ConfigError, match=r"qdrant\.index\.m"):
        load_settings(None, {"qdrant": {"engine": "edge", "index": {"m": -1}}})
    with pytest.raises(ConfigError, match=r"qdrant\.index\.quantization"):
        load_settings(None, {"qdrant": {"engine": "edge", "index": {"quantization": "pq"}}})
    with pytest.raises(ConfigError, match=r"qdrant\.index\.typo"):
        load_settings(None, {"qdrant": {"engine": "edge", "index": {"typo": 1}}})
    server = {"url": "http://localhost:6333", "engine": "local", "index": {"m": 8}}
    assert load_settings(None, {"qdrant": server}).qdrant.index.m == 8


def test_setting_index_keys_for_the_local_engine_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"qdrant\.index \(m, quantization\) applies to the edge"):
        load_settings(
            None, {"qdrant": {"engine": "local", "index": {"m": 8, "quantization": "none"}}}
        )
    # Untouched, the section is no error, and the local engine's store gets none of it.
    settings = load_settings(None, {"qdrant": {"engine": "local"}})
    assert not settings.qdrant.indexed


def test_open_store_passes_the_index_to_edge_and_server_only(tmp_path: Path) -> None:
    edge_settings = load_settings(None, {"state_dir": str(tmp_path), "qdrant": {"engine": "edge"}})
    local = load_settings(None, {"state_dir": str(tmp_path), "qdrant": {"engine": "local"}})
    store = open_store(edge_settings, client=ServerLike())  # type: ignore[arg-type]
    assert store.index == edge_settings.qdrant.index
    assert open_store(local, client=ServerLike()).index is None  # type: ignore[arg-type]


# -- a server ----------------------------------------------------------------------------------


def bm25() -> SparseTarget:
    return SparseTarget(SparseVectorGenerator(), "qdrant-bm25", "qdrant-bm25", idf=True)


CHUNKS = [
    chunk(f"c{i}", f"text number {i} about wing flutter and shells {i % 7}") for i in range(40)
]


def test_a_server_gets_the_index_at_creation_and_a_deferred_build_in_a_first_sync() -> None:
    client = ServerLike()
    store = Store(client, index=IndexSettings(m=24, ef_construct=80))  # type: ignore[arg-type]
    writer = Writer(store, "chunks", batch_size=8)
    syncer = Syncer(writer, [FakeDense()], bm25(), batch_size=8)
    syncer.run(ListSource(CHUNKS))

    created = {kw["vectors_config"].__len__(): kw for kw in client.requests("create_collection")}
    chunks = created[1]  # the runs collection has no vectors and gets no index parameters
    assert chunks["vectors_config"]["fake"].on_disk is True
    assert chunks["on_disk_payload"] is True
    assert chunks["hnsw_config"] == qm.HnswConfigDiff(m=24, ef_construct=80)
    assert chunks["quantization_config"] == INT8
    assert "optimizers_config" not in chunks  # segment sizes: the server's own choice
    assert "hnsw_config" not in created[0]
    hnsw = [kw["hnsw_config"] for kw in client.requests("update_collection") if "hnsw_config" in kw]
    # Off while the first sync loads, back on once it is loaded (the server builds it then).
    assert hnsw == [qm.HnswConfigDiff(m=0), qm.HnswConfigDiff(m=24, ef_construct=80)]

    # A second sync adds to a collection with points: no deferral.
    client.sent.clear()
    syncer.run(ListSource([*CHUNKS, chunk("new", "one more")]))
    assert not [kw for kw in client.requests("update_collection") if "hnsw_config" in kw]
    store.close()


def test_changed_settings_apply_in_place_on_a_server() -> None:
    client = ServerLike()
    create_aliased_chunk_collection(Store(client, index=IndexSettings()), "chunks", LAYOUT)  # type: ignore[arg-type]
    client.sent.clear()
    changed = IndexSettings(m=32, quantization="none", on_disk_vectors=False)
    Writer(Store(client, index=changed), "chunks").ensure_collection(LAYOUT)  # type: ignore[arg-type]

    (update,) = [kw for kw in client.requests("update_collection") if "metadata" not in kw]
    assert update["hnsw_config"] == qm.HnswConfigDiff(m=32, ef_construct=100)
    assert update["quantization_config"] == qm.Disabled.DISABLED
    assert update["vectors_config"] == {"fake": qm.VectorParamsDiff(on_disk=False)}
    assert "collection_params" not in update  # the payload stays on disk, as configured
    # Fitted: the next sync sends nothing.
    client.sent.clear()
    Writer(Store(client, index=changed), "chunks").ensure_collection(LAYOUT)  # type: ignore[arg-type]
    assert [kw for kw in client.requests("update_collection") if "metadata" not in kw] == []


def test_a_server_gets_the_largest_segment_when_set() -> None:
    client = ServerLike()
    store = Store(client, index=IndexSettings(max_segment_mb=256))  # type: ignore[arg-type]
    create_aliased_chunk_collection(store, "chunks", LAYOUT)
    (created,) = client.requests("create_collection")
    assert created["optimizers_config"] == qm.OptimizersConfigDiff(max_segment_size=256 * 1024)
    client.sent.clear()
    Writer(store, "chunks").ensure_collection(LAYOUT)  # fitted: nothing to send
    assert [kw for kw in client.requests("update_collection") if "metadata" not in kw] == []
    bigger = Store(client, index=IndexSettings(max_segment_mb=1024))  # type: ignore[arg-type]
    Writer(bigger, "chunks").ensure_collection(LAYOUT)
    (update,) = [kw for kw in client.requests("update_collection") if "metadata" not in kw]
    assert update == {"optimizers_config": qm.OptimizersConfigDiff(max_segment_size=1024 * 1024)}


def test_searches_ask_for_rescoring_and_the_configured_ef() -> None:
    client = ServerLike()
    store = Store(client, index=IndexSettings(hnsw_ef=96))  # type: ignore[arg-type]
    create_aliased_chunk_collection(store, "chunks", LAYOUT)
    sent: list[dict[str, Any]] = []

    def query_points(name: str, **kwargs: Any) -> Any:
        sent.append(dict(kwargs))
        # The local mode searches exhaustively, and warns that it has no use for the params.
        kwargs["search_params"] = None
        kwargs["prefetch"] = [p.model_copy(update={"params": None}) for p in kwargs["prefetch"]]
        return client.inner.query_points(name, **kwargs)

    client.query_points = query_points  # type: ignore[attr-defined]
    branch = qm.Prefetch(query=[0.1] * 16, using="fake", limit=5)
    store.query("chunks", qm.FusionQuery(fusion=qm.Fusion.RRF), prefetch=[branch])
    wanted = qm.SearchParams(hnsw_ef=96, quantization=qm.QuantizationSearchParams(rescore=True))
    assert sent[0]["search_params"] == wanted
    assert sent[0]["prefetch"][0].params == wanted
    assert Store(client, index=IndexSettings(quantization="none"))._search_params() is None  # type: ignore[arg-type]


# -- the edge engine ---------------------------------------------------------------------------


def _shard_config(root: Path, collection: str) -> dict[str, Any]:
    path = root / "edge" / collection / "shard" / "edge_config.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_edge_keeps_the_index_parameters_across_reopening(tmp_path: Path) -> None:
    store = Store(EdgeClient(tmp_path), index=IndexSettings(m=32, ef_construct=64))
    name = create_aliased_chunk_collection(store, "chunks", LAYOUT)
    store.close()

    store = Store(EdgeClient(tmp_path))
    config = store.info("chunks").config
    assert (config.hnsw_config.m, config.hnsw_config.ef_construct) == (32, 64)
    assert config.quantization_config == INT8
    assert config.params.on_disk_payload is True
    assert isinstance(config.params.vectors, dict)
    assert config.params.vectors["fake"].on_disk is True
    stored = json.loads((tmp_path / "edge" / name / "collection.json").read_text())["index"]
    assert stored == {"m": 32, "ef_construct": 64, "on_disk_payload": True, "quantization": "int8"}
    # The engine keeps them too: what it builds follows them.
    shard = _shard_config(tmp_path, name)
    assert (shard["hnsw_config"]["m"], shard["vectors"]["fake"]["on_disk"]) == (32, True)
    assert shard["quantization_config"] == {"scalar": {"type": "int8", "always_ram": True}}
    store.close()


def test_edge_applies_changed_settings_in_place_but_keeps_quantization(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(EdgeClient(tmp_path), index=IndexSettings())
    name = create_aliased_chunk_collection(store, "chunks", LAYOUT)
    store.close()
    changed = IndexSettings(m=8, quantization="none", on_disk_payload=False)
    store = Store(EdgeClient(tmp_path), index=changed)
    with caplog.at_level(logging.WARNING):
        Writer(store, "chunks").ensure_collection(LAYOUT)
    assert "cannot turn it off on an existing collection" in caplog.text
    config = store.info("chunks").config
    assert (config.hnsw_config.m, config.params.on_disk_payload) == (8, False)
    assert config.quantization_config == INT8
    store.close()
    assert _shard_config(tmp_path, name)["hnsw_config"]["m"] == 8


class _Watched(ListSource):
    """Asks ``look`` what it sees half-way through the read; fails there when ``fail``."""

    def __init__(self, chunks: Sequence[ChunkRecord], look: Any, *, fail: bool = False) -> None:
        super().__init__(chunks)
        self.look = look
        self.fail = fail
        self.seen: list[Any] = []

    def __iter__(self) -> Iterator[ChunkRecord]:
        for number, record in enumerate(super().__iter__()):
            if number == len(self.chunks) // 2:
                self.seen.append(self.look())
                if self.fail:
                    raise SourceError("memory://test", "broke half-way")
            yield record


def _segments(store: Store) -> int:
    return store.info("chunks").segments_count or 0


def _ids(store: Store) -> set[Any]:
    return {p.id for p in store.scroll("chunks", limit=100_000)[0]}


@pytest.mark.parametrize("fail", [False, True])
def test_an_edge_sync_seals_full_segments_as_it_loads(tmp_path: Path, fail: bool) -> None:
    # 1 MB segments of 256-d points (1 KB each): one sealed every 1,024.
    chunks = [chunk(f"c{i}", f"text number {i} about wing flutter {i % 97}") for i in range(6000)]
    store = Store(EdgeClient(tmp_path / "small"), index=IndexSettings(m=24, max_segment_mb=1))
    writer = Writer(store, "chunks", batch_size=64)
    syncer = Syncer(writer, [FakeDense(dim=256)], bm25(), batch_size=64)

    def look() -> tuple[int, int, int]:
        return store.count("chunks"), _segments(store), store.info("chunks").config.hnsw_config.m

    source = _Watched(chunks, look, fail=fail)
    if fail:
        with pytest.raises(SourceError):
            syncer.run(source)
    else:
        syncer.run(source)
    ((loaded, segments, m),) = source.seen
    # Half-way, the first full segment is sealed with its graph (never turned off on edge),
    # while the load goes on into a new one.
    assert loaded >= 1024 and segments >= 2 and m == 24
    info = store.info("chunks")
    assert info.config.hnsw_config.m == 24
    if fail:
        assert store.count("chunks") >= 1024  # what was acknowledged stays
        store.close()
        return
    assert info.points_count == 6000 and (info.segments_count or 0) >= 5
    assert info.config.optimizer_config.max_segment_size == 1024
    assert _shard_config(tmp_path / "small", "chunks__1")["optimizers"]["max_segment_size"] == 1024
    # Nothing lost on the way: the same points as one segment holds (the default size).
    whole = Store(EdgeClient(tmp_path / "whole"), index=IndexSettings(m=24))
    Syncer(Writer(whole, "chunks", batch_size=64), [FakeDense(dim=256)], bm25(), batch_size=64).run(
        ListSource(chunks)
    )
    assert _segments(whole) < info.segments_count
    assert _ids(store) == _ids(whole)
    for query in (chunks[5], chunks[5500]):
        dense = FakeDense(dim=256).encode([query.text])[0]
        hits = store.query("chunks", dense, using="fake", limit=5)
        found = {h.payload["chunk_id"] for h in hits if h.payload and h.score > 0.9999}
        assert query.chunk_id in found  # the fake model gives some texts the same vector
    whole.close()
    store.close()


def test_edge_segment_size_applies_to_an_existing_collection(tmp_path: Path) -> None:
    store = Store(EdgeClient(tmp_path), index=IndexSettings())
    name = create_aliased_chunk_collection(store, "chunks", LAYOUT)
    assert store.info("chunks").config.optimizer_config.max_segment_size == 128 * 1024
    assert _shard_config(tmp_path, name)["optimizers"]["max_segment_size"] == 128 * 1024
    store.close()
    store = Store(EdgeClient(tmp_path), index=IndexSettings(max_segment_mb=512))
    Writer(store, "chunks").ensure_collection(LAYOUT)
    assert store.info("chunks").config.optimizer_config.max_segment_size == 512 * 1024
    store.close()
    assert _shard_config(tmp_path, name)["optimizers"]["max_segment_size"] == 512 * 1024


def test_a_collection_left_with_the_graph_off_gets_it_back_at_the_next_sync(
    tmp_path: Path,
) -> None:
    # As a run killed during a deferred load leaves a server's collection (and an edge one of
    # an earlier version): points, and the graph off.
    client = EdgeClient(tmp_path)
    store = Store(client, index=IndexSettings())
    create_aliased_chunk_collection(store, "chunks", CollectionLayout(dense={"fake": 16}))
    assert not store.defer_index("chunks")  # edge defers nothing: it grows no graph anyway
    client.update_collection("chunks", hnsw_config=qm.HnswConfigDiff(m=0))
    store.upsert("chunks", [qm.PointStruct(id=1, vector={"fake": [1.0] * 16})])
    store.close()
    store = Store(EdgeClient(tmp_path), index=IndexSettings())
    Writer(store, "chunks").ensure_collection(CollectionLayout(dense={"fake": 16}))
    assert store.info("chunks").config.hnsw_config.m == 16
    store.close()


def test_int8_quantization_with_rescoring_keeps_the_ranking(tmp_path: Path) -> None:
    # Enough 256-d points for the engine to index and quantize its segments (~10 MB): for each
    # query, ten neighbours at graded distances (as a query's best matches stand out from the
    # rest in real embeddings), among random others. Sparse weights differ from point to point:
    # no ties, whose order no engine promises.
    rng = random.Random(7)

    def gauss(scale: float = 1.0) -> list[float]:
        return [rng.gauss(0, scale) for _ in range(256)]

    queries = [gauss() for _ in range(20)]
    vectors = [
        [c + n for c, n in zip(query, gauss(0.15 * rank), strict=True)]
        for query in queries
        for rank in range(1, 11)
    ]
    vectors += [gauss() for _ in range(12_000 - len(vectors))]
    points = [
        qm.PointStruct(
            id=i,
            vector={"d": v, "s": qm.SparseVector(indices=[i % 50], values=[1.0 + i / 12_000])},
        )
        for i, v in enumerate(vectors)
    ]
    rankings: dict[str, list[list[Any]]] = {}
    fused: dict[str, list[dict[Any, float]]] = {}
    for quantization in ("int8", "none"):
        client = EdgeClient(tmp_path / quantization)
        store = Store(
            client,
            # No graph: the search scans the segment, int8 copies then originals (quicker to build).
            index=IndexSettings(quantization=quantization, m=0),  # type: ignore[arg-type]
        )
        store.create_collection(
            "chunks",
            {"d": qm.VectorParams(size=256, distance=qm.Distance.COSINE)},
            {"s": qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
        )
        for start in range(0, len(points), 2000):
            store.upsert("chunks", points[start : start + 2000])
        store.build_index("chunks")
        assert (store.info("chunks").indexed_vectors_count or 0) >= len(points)
        unrescored = client.query_points(
            "chunks",
            queries[0],
            using="d",
            search_params=qm.SearchParams(quantization=qm.QuantizationSearchParams(rescore=False)),
        )
        scores = [p.score for p in store.query("chunks", queries[0], using="d")]
        # The int8 copies are what the search reads (their scores are not the originals').
        assert ([p.score for p in unrescored.points] != scores) == (quantization == "int8")
        rankings[quantization] = [
            [p.id for p in store.query("chunks", q, using="d", limit=10)] for q in queries
        ]
        # RRF ties a dense rank with the same sparse rank: their order is the engine's; each
        # point's fused score is the ranking.
        fused[quantization] = [
            {
                p.id: round(p.score, 6)
                for p in store.query(
                    "chunks",
                    qm.FusionQuery(fusion=qm.Fusion.RRF),
                    prefetch=[
                        qm.Prefetch(query=q, using="d", limit=20),
                        qm.Prefetch(
                            query=qm.SparseVector(indices=[n], values=[1.0]), using="s", limit=20
                        ),
                    ],
                    limit=10,
                )
            }
            for n, q in enumerate(queries)
        ]
        store.close()
    assert rankings["int8"] == rankings["none"]
    assert rankings["none"][0] == list(range(10))  # the graded neighbours, in order
    assert fused["int8"] == fused["none"]


@pytest.mark.parametrize("engine", ["server", "edge"])
def test_a_rebuild_builds_the_graph_before_the_swap(tmp_path: Path, engine: str) -> None:
    client: Any = ServerLike() if engine == "server" else EdgeClient(tmp_path)
    store = Store(client, index=IndexSettings(m=24))
    Syncer(Writer(store, "chunks"), [FakeDense()], bm25()).run(ListSource(CHUNKS))
    seen: list[tuple[str, int]] = []

    def step(name: str, details: dict[str, Any]) -> None:
        if name in {"copied", "verified"}:
            seen.append(
                (name, store.info(details.get("collection") or "chunks__2").config.hnsw_config.m)
            )

    new = rebuild_collection(
        store,
        "chunks",
        CollectionLayout(dense={"fake": 32}),
        {"fake": FakeDense(dim=32)},
        on_step=step,
    )
    assert new == "chunks__2"
    # A server loads the new collection with the graph off (its bulk-load recipe); the edge
    # engine builds each segment's graph once anyway, so it never turns it off.
    assert seen[0] == ("copied", 0 if engine == "server" else 24)
    assert seen[-1] == ("verified", 24)
    info = store.info("chunks")
    assert info.config.hnsw_config.m == 24
    if engine == "edge":
        assert (info.indexed_vectors_count or 0) >= len(CHUNKS)  # built, not left to scan
    store.close()

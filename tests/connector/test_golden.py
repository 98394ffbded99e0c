"""Golden values: what every stored point of every user depends on, pinned as literals.

Point ids, text and content hashes, and each model's signature and vectors are written into
users' collections. A change to any of them re-ids or re-encodes every stored point (or, worse,
leaves old and new points side by side), so it is never a refactoring: it needs a migration
(``migrations/NNNN_name.py``, see the README's "Schema migrations") shipped with it. Update a
value here only together with that migration.

The values were computed by the code as it was at commit 6b6a094.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.chunks import ChunkRecord, content_hash, point_id, text_hash
from connector.dense import SentenceTransformerEncoder
from connector.settings import DenseModelConfig, load_settings
from connector.sparse.generator import ModelRegistry, SparseVectorGenerator
from connector.store.edge import EdgeClient
from connector.wiring import build_syncer
from tests.fakes import ListSource

MIGRATION = (
    "{what} changed: every point already stored by users would be {effect}. That needs a "
    "migration (migrations/NNNN_name.py); update the pinned value only together with one."
)


def _pinned(what: str, effect: str, got: Any, expected: Any) -> None:
    assert got == expected, MIGRATION.format(what=what, effect=effect)


@pytest.mark.parametrize(
    ("source", "chunk_id", "expected"),
    [
        ("corpus.jsonl", "a", "e2febf3c-e42c-5f8c-bc81-76355469a986"),
        ("https://example.com/data.jsonl", "doc-1#0", "bff4c5b9-8f9a-5e26-bcf6-21ce521ea36f"),
        ("notes/Zürich.md", "δ:7 — 名前", "67a3b2ee-dbad-51bc-9e0a-1d308c4c72af"),
        ("", "", "b2182059-b59a-5f66-8cb9-5fbb97e8b037"),
    ],
)
def test_point_id(source: str, chunk_id: str, expected: str) -> None:
    _pinned(
        "point_id",
        "orphaned under its old id and written again",
        point_id(source, chunk_id),
        expected,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Boundary layer transition on a flat plate.",
            "d176e4f5b2691c724c8e0070d79ee402dd83227915e08ea866f47beb945562df",
        ),
        (
            "Zürich — 名前 \U0001f600",
            "3981c56325728feec6421e657b2740306adca8b499879df5b610678804dfa75e",
        ),
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        # A lone surrogate (from a JSON \ud800 escape) hashes instead of failing.
        ("\ud800", "91a681b998555fb475479817b126c94e57e52011fa1842c5d188795a4a05226b"),
    ],
)
def test_text_hash(text: str, expected: str) -> None:
    _pinned("text_hash", "re-encoded by the next sync", text_hash(text), expected)


def test_content_hash() -> None:
    effect = "rewritten by the next sync"
    heat = "81b212ed475aff979cec260359959d76a6c54c2f92652b9434abf280045a2a92"
    _pinned(
        "content_hash",
        effect,
        content_hash("Heat transfer.", {"topic": "heat", "year": 1958}),
        heat,
    )
    # The order of metadata keys does not count.
    _pinned(
        "content_hash",
        effect,
        content_hash("Heat transfer.", {"year": 1958, "topic": "heat"}),
        heat,
    )
    _pinned(
        "content_hash",
        effect,
        content_hash("Heat transfer.", {}),
        "0173ba401d2f54b28c5a7862bb2bc2786278e83f175ecd46e48d85b496e8ab76",
    )
    nested = {"ort": "Zürich", "nested": {"b": [1, 2.5, None, True], "a": "x"}}
    _pinned(
        "content_hash",
        effect,
        content_hash("Zürich", nested),
        "36bab4bfd1202dd380f4a9769e71a160b73a67cf77a2aabe0f5e9b412811dd7a",
    )


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("qdrant-bm25", "qdrant-bm25|fastembed|english|k=1.2|b=0.75|avg_len=256|max_len=40"),
        ("qdrant-bm25-engine", "qdrant-bm25|engine|english|k=1.2|b=0.75|avg_len=256"),
        ("qdrant-minilm-attention", "qdrant-minilm-attention|all-MiniLM-L6-v2|alpha=0.5"),
    ],
)
def test_sparse_signature_with_default_options(model: str, expected: str) -> None:
    got = SparseVectorGenerator().signature(model)
    _pinned(f"the {model} signature", "re-encoded (or refused) by the next sync", got, expected)


def test_splade_signature() -> None:
    # Given max_length, the signature needs no model; without it, the checkpoint's own limit
    # goes in (pinned on a tiny model in tests/connector/sparse/test_splade.py::test_signature).
    options = {"splade": {"model": "naver/splade-v3", "max_length": 256}}
    got = SparseVectorGenerator(ModelRegistry(options)).signature("splade")
    _pinned(
        "the splade signature",
        "re-encoded by the next sync",
        got,
        "splade|naver/splade-v3|max_len=256",
    )


def test_dense_signature_of_the_bundled_minilm() -> None:
    encoder = SentenceTransformerEncoder(DenseModelConfig(model="all-MiniLM-L6-v2"))
    got = (encoder.name, encoder.signature, encoder.dim)
    expected = ("all-minilm-l6-v2", "all-MiniLM-L6-v2|dim=384|max_seq=256", 384)
    assert encoder._model is None  # read from the model folder's files, no weights loaded
    _pinned(
        "the bundled MiniLM's vector name or signature",
        "re-encoded by the next sync",
        got,
        expected,
    )


TEXTS = [
    "Boundary layer transition on a flat plate at supersonic speed.",
    "The running shoes run faster than the runner's old shoes!",
    # Where the two BM25 flavours tokenise differently: underscores, hyphens, apostrophes.
    "Zürich's naïve café: state_of_the_art e-mail, rock'n'roll, résumé of 2024 Flutter tests.",
]
# (index, value) pairs of each text's document vector, sorted by index: the order of a sparse
# vector's entries means nothing to Qdrant.
FASTEMBED_DOCUMENTS = [
    [
        (69842580, 1.6608670008846949),
        (76310486, 1.6608670008846949),
        (345312046, 1.6608670008846949),
        (662039598, 1.6608670008846949),
        (679200247, 1.6608670008846949),
        (997512866, 1.6608670008846949),
        (1314392305, 1.6608670008846949),
    ],
    [
        (243905464, 1.8927911275415896),
        (303109060, 1.8927911275415896),
        (819028769, 1.6608670008846949),
        (863034212, 1.6608670008846949),
        (946033505, 1.6608670008846949),
    ],
    [
        (103505250, 1.6348330914368652),
        (116628897, 1.6348330914368652),
        (605818632, 1.6348330914368652),
        (756638508, 1.6348330914368652),
        (807925970, 1.6348330914368652),
        (967714644, 1.6348330914368652),
        (1055508231, 1.6348330914368652),
        (1167338989, 1.6348330914368652),
        (1253036297, 1.6348330914368652),
        (1555540962, 1.6348330914368652),
        (1700062636, 1.6348330914368652),
        (1701593959, 1.6348330914368652),
        (1920774030, 1.6348330914368652),
    ],
]
ENGINE_DOCUMENTS = [
    [
        (69842580, 1.6608669757843018),
        (76310486, 1.6608669757843018),
        (345312046, 1.6608669757843018),
        (662039598, 1.6608669757843018),
        (679200247, 1.6608669757843018),
        (997512866, 1.6608669757843018),
        (1314392305, 1.6608669757843018),
    ],
    [
        (243905464, 1.8927911520004272),
        (303109060, 1.8927911520004272),
        (819028769, 1.6608669757843018),
        (863034212, 1.6608669757843018),
        (946033505, 1.6608669757843018),
    ],
    [
        (103505250, 1.6305732727050781),
        (116628897, 1.6305732727050781),
        (205205340, 1.6305732727050781),
        (605818632, 1.6305732727050781),
        (722829366, 1.6305732727050781),
        (756638508, 1.6305732727050781),
        (967714644, 1.6305732727050781),
        (1055508231, 1.6305732727050781),
        (1167338989, 1.6305732727050781),
        (1253036297, 1.6305732727050781),
        (1555540962, 1.6305732727050781),
        (1700062636, 1.6305732727050781),
        (1701593959, 1.6305732727050781),
        (1920774030, 1.6305732727050781),
    ],
]


def _pairs(vector: dict[str, Any]) -> list[tuple[int, float]]:
    return sorted(zip(vector["indices"], vector["values"], strict=True))


@pytest.mark.parametrize(
    ("model", "documents"),
    [("qdrant-bm25", FASTEMBED_DOCUMENTS), ("qdrant-bm25-engine", ENGINE_DOCUMENTS)],
)
def test_bm25_vectors(model: str, documents: list[list[tuple[int, float]]]) -> None:
    generator = SparseVectorGenerator()
    result = generator.generate([ChunkRecord(text=t) for t in TEXTS], model)
    assert result.success and not result.fallback_count, result.error_message
    got = [_pairs(vector) for vector in result.vectors if vector is not None]
    _pinned(
        f"{model} document vectors", "out of step with new ones until re-encoded", got, documents
    )
    # A query holds each of its terms once, with weight 1 (the collection applies IDF).
    queries = [_pairs(generator.encode_query(text, model)) for text in TEXTS]
    expected = [[(index, 1.0) for index, _ in document] for document in documents]
    _pinned(f"{model} query vectors", "searched with vectors of another space", queries, expected)


def test_vectors_recorded_on_a_bm25_and_minilm_collection(tmp_path: Path) -> None:
    # The defaults: the bundled MiniLM and qdrant-bm25. An empty source is enough for the sync to
    # create the collection and record its vectors; no model is loaded.
    settings = load_settings(None, {"state_dir": str(tmp_path / "state")})
    client = EdgeClient(tmp_path / "qdrant")
    with build_syncer(settings, source=ListSource([]), client=client, record=False) as job:
        job.run()
        recorded = job.store.metadata(settings.qdrant.collection)["connector"]
    expected = {
        "vectors": {
            "all-minilm-l6-v2": {
                "kind": "dense",
                "signature": "all-MiniLM-L6-v2|dim=384|max_seq=256",
                "size": 384,
            },
            "qdrant-bm25": {
                "kind": "sparse",
                "model": "qdrant-bm25",
                "flavour": "fastembed",
                "index_space": "mmh3(snowball-stem)",
                "signature": "qdrant-bm25|fastembed|english|k=1.2|b=0.75|avg_len=256|max_len=40",
                "idf": True,
                "options": {
                    "k": 1.2,
                    "b": 0.75,
                    "avg_len": 256.0,
                    "avg_len_auto": False,
                    "language": "english",
                },
            },
        }
    }
    _pinned("the recorded vectors (connector.vectors)", "refused or rebuilt", recorded, expected)

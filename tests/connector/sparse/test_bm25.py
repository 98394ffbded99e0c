"""Tests for connector.sparse.bm25: exact parity with fastembed's Qdrant/bm25, plus behaviour."""

from __future__ import annotations

import math
import pickle
import random
import re
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import mmh3
import pytest

from connector.sparse.bm25 import STOPWORDS_DIR, Bm25, SparseVec
from tests.paths import FIXTURES

__all__: list[str] = []

FIXTURE = FIXTURES / "sentences.txt"

Pairs = list[tuple[int, float]]


def _read_sentences() -> list[str]:
    # split("\n") rather than splitlines(): the fixture holds characters (e.g. U+2028-like
    # separators, \x1c) that splitlines() would treat as line breaks.
    text = FIXTURE.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


SENTENCES = _read_sentences()


def _pairs(vec: SparseVec) -> Pairs:
    return sorted(zip(vec.indices, vec.values, strict=True))


def _reference_pairs(embedding: Any) -> Pairs:
    # float() because fastembed's query values are int64 ones; the comparison stays exact.
    return sorted(
        zip(embedding.indices.tolist(), map(float, embedding.values.tolist()), strict=True)
    )


def _make_reference(model_dir: Path, cache_dir: Path, **kwargs: Any) -> Any:
    from fastembed.sparse import bm25 as fastembed_bm25

    # specific_model_path makes fastembed read the stopwords from that folder, fully offline.
    return fastembed_bm25.Bm25(
        "Qdrant/bm25", specific_model_path=str(model_dir), cache_dir=str(cache_dir), **kwargs
    )


@pytest.fixture(scope="module")
def fastembed_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fastembed_cache")


@pytest.fixture(scope="module")
def reference(fastembed_cache: Path) -> Any:
    return _make_reference(STOPWORDS_DIR, fastembed_cache)


def _doc_mismatches(ours: Bm25, ref: Any, texts: list[str]) -> list[str]:
    got = ours.encode_documents(texts)
    expected = list(ref.embed(texts))
    assert len(got) == len(expected) == len(texts)
    return [
        text
        for text, vec, emb in zip(texts, got, expected, strict=True)
        if _pairs(vec) != _reference_pairs(emb)
    ]


def _query_mismatches(ours: Bm25, ref: Any, texts: Iterable[str]) -> list[str]:
    bad = []
    for text in texts:
        (emb,) = list(ref.query_embed(text))
        if _pairs(ours.encode_query(text)) != _reference_pairs(emb):
            bad.append(text)
    return bad


# --------------------------------------------------------------------------- fixture sanity


def test_fixture_is_substantial() -> None:
    assert len(SENTENCES) >= 400
    assert all(line.strip() for line in SENTENCES)
    assert any(not line.isascii() for line in SENTENCES)


def test_bundled_stopwords_match_nltk_english() -> None:
    words = (STOPWORDS_DIR / "english.txt").read_text(encoding="utf-8").split("\n")
    assert words[-1] == ""
    words = words[:-1]
    assert len(words) == 179 == len(set(words))
    assert words[:4] == ["i", "me", "my", "myself"]
    assert words[-1] == "wouldn't"
    assert {"the", "and", "don't", "ain", "o"} <= set(words)


def test_reference_uses_bundled_stopwords(reference: Any) -> None:
    assert len(reference.stopwords) == 179


# --------------------------------------------------------------------------- exact parity


def test_documents_identical_to_fastembed(reference: Any) -> None:
    assert _doc_mismatches(Bm25(), reference, SENTENCES) == []


def test_queries_identical_to_fastembed(reference: Any) -> None:
    assert _query_mismatches(Bm25(), reference, SENTENCES) == []


def test_single_document_calls_match_batch() -> None:
    bm25 = Bm25()
    batch = bm25.encode_documents(SENTENCES)
    assert [Bm25().encode_documents([text])[0] for text in SENTENCES] == batch


@pytest.mark.parametrize(
    "params",
    [
        {"avg_len": 100.0},
        {"avg_len": 10.5},
        {"avg_len": 1.0},
        {"k": 0.9, "b": 0.4},
        {"k": 2.0, "b": 1.0, "avg_len": 33.3},
        {"k": 0.0, "b": 0.0},
        {"k": 1.5, "b": 0.0, "avg_len": 512.0},
        {"token_max_length": 6},
    ],
)
def test_parameter_variants_identical_to_fastembed(
    params: dict[str, Any], fastembed_cache: Path
) -> None:
    ref = _make_reference(STOPWORDS_DIR, fastembed_cache, **params)
    subset = SENTENCES[::4] + SENTENCES[-25:]
    ours = Bm25(**params)
    assert _doc_mismatches(ours, ref, subset) == []
    assert _query_mismatches(ours, ref, subset[::5]) == []


def test_random_unicode_text_identical_to_fastembed(reference: Any) -> None:
    # Characters chosen to stress the tokenizer: case mappings that change length or depend on
    # context (İ, ß, final sigma), combining marks, connector punctuation, digits, CJK, emoji.
    pool = list(
        "aAbBzZ09_ \t\n'’-.,!?\"()ΣσςΑΒΟΔİıIiẞßÅåé\u0301\u0307Ǆǅǆﬁ‿＿﹏・中文字😀👍🏽\u00a0\u200b"
    )
    words = ["running", "Runs", "the", "THE", "O'Neil", "don't", "x" * 41, "y" * 40, "foo_bar"]
    rng = random.Random(1234)
    texts = []
    for _ in range(1500):
        parts = []
        for _ in range(rng.randint(0, 12)):
            if rng.random() < 0.3:
                parts.append(rng.choice(words))
            else:
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
        texts.append(rng.choice(["", " ", "'"]).join(parts))
    ours = Bm25()
    assert _doc_mismatches(ours, reference, texts) == []
    assert _query_mismatches(ours, reference, texts[::3]) == []


def test_hash_collisions_resolved_like_fastembed(reference: Any) -> None:
    # Pre-computed pairs of stems with the same abs(mmh3 hash); fastembed's dict keeps the
    # value of the stem counted last, in the position of the first.
    pairs = [("zx4q8b", "zxw79q4"), ("zx2ewb", "zxwa8d4")]
    bm25 = Bm25()
    for first, second in pairs:
        assert bm25.term_id(first) == bm25.term_id(second)
        assert bm25.tokenize(f"{first} {second}") == [first, second]
    texts = [
        "zx4q8b zx4q8b zx4q8b zxw79q4 alpha",
        "zxw79q4 zx4q8b zx4q8b beta zxwa8d4 zx2ewb zx2ewb",
        "zx2ewb zxwa8d4",
    ]
    assert _doc_mismatches(bm25, reference, texts) == []
    assert _query_mismatches(bm25, reference, texts) == []
    vec = bm25.encode_documents([texts[0]])[0]
    assert len(vec.indices) == len(set(vec.indices)) == 2
    assert vec.tokens == ["zxw79q4", "alpha"]
    # tf=1 for the surviving (last) stem, not tf=3 of the first one.
    assert vec.values[0] == vec.values[1]
    query = bm25.encode_query(texts[0])
    assert query.tokens == ["zx4q8b", "alpha"] and query.values == [1.0, 1.0]


def test_other_language_without_stopwords_matches_fastembed(
    tmp_path: Path, fastembed_cache: Path
) -> None:
    # A model folder with only english.txt: fastembed then has no German stopwords either.
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(STOPWORDS_DIR / "english.txt", model_dir / "english.txt")
    ref = _make_reference(model_dir, fastembed_cache, language="german")
    texts = ["Die Häuser der Stadt sind größer als die Häuser auf dem Land.", "Straße STRASSE"]
    ours = Bm25(language="german")
    assert "die" in ours.tokenize(texts[0])
    assert _doc_mismatches(ours, ref, texts) == []
    assert _query_mismatches(ours, ref, texts) == []


def test_lowercasing_a_non_word_character_never_makes_a_word_character() -> None:
    # The tokenizer skips fastembed's [^\w\s] pre-pass for non-ASCII text without a capital
    # sigma; that is only valid while this holds for the running interpreter's Unicode data.
    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    non_word = "".join(re.findall(r"[^\w\s]", everything))
    assert re.search(r"\w", non_word.lower()) is None


# --------------------------------------------------------------------------- behaviour


def test_stopwords_and_punctuation_dropped() -> None:
    bm25 = Bm25()
    assert bm25.tokenize("The running of the Bulls, isn't it?") == ["run", "bull"]
    assert bm25.tokenize("the and of to a in is it you that he was") == []
    empty = SparseVec([], [], [])
    assert bm25.encode_documents(["the and of", "", "   ", "!!! ... ---"]) == [empty] * 4
    assert bm25.encode_query("the of ?") == SparseVec([], [], [])
    # A lone "_" is punctuation; inside a word it is part of the token.
    assert bm25.tokenize("_ foo_bar __ _x") == ["foo_bar", "__", "_x"]


def test_token_max_length() -> None:
    assert Bm25().tokenize("a" * 40 + " " + "b" * 41) == ["a" * 40]
    assert Bm25(token_max_length=3).tokenize("cat house") == ["cat"]


def test_stemming_shares_ids() -> None:
    bm25 = Bm25()
    run_ids = {bm25.encode_query(word).indices[0] for word in ["running", "runs", "Run", "RUN"]}
    assert run_ids == {bm25.term_id("run")}
    vec = bm25.encode_documents(["running runs"])[0]
    assert vec.tokens == ["run"] and len(vec.indices) == 1


def test_term_id_is_abs_signed_murmur3() -> None:
    bm25 = Bm25()
    assert bm25.term_id("run") == abs(mmh3.hash("run")) == 243905464
    assert all(0 <= bm25.term_id(stem) < 2**31 + 1 for stem in ["a", "b", "zx4q8b", "日本"])


def test_term_frequency_saturates() -> None:
    bm25 = Bm25()
    fillers = [f"filler{i}" for i in range(10)]
    values = []
    # Same document length every time, so only tf changes.
    for tf in range(1, 11):
        text = " ".join(["apple"] * tf + fillers[: 10 - tf])
        vec = bm25.encode_documents([text])[0]
        values.append(vec.values[vec.tokens.index("appl")])
    assert values == sorted(values) and len(set(values)) == len(values)
    assert all(0 < value < 1.2 + 1 for value in values)
    many = bm25.encode_documents([" ".join(["apple"] * 10_000)])[0].values[0]
    assert values[-1] < many < 2.2


def test_longer_documents_get_lower_values() -> None:
    bm25 = Bm25()
    short, long = bm25.encode_documents(
        ["apple banana", "apple banana " + " ".join(f"word{i}" for i in range(300))]
    )
    assert long.values[0] < short.values[0]
    # b=0 disables length normalisation entirely.
    flat = Bm25(b=0.0)
    short, long = flat.encode_documents(["apple", "apple " + " ".join(f"w{i}" for i in range(300))])
    assert short.values[0] == long.values[0]


def test_value_formula() -> None:
    bm25 = Bm25(k=1.2, b=0.75, avg_len=256.0)
    vec = bm25.encode_documents(["apple apple pear"])[0]
    assert vec.tokens == ["appl", "pear"]
    assert vec.indices == [bm25.term_id("appl"), bm25.term_id("pear")]
    norm = 1.2 * (1 - 0.75 + 0.75 * 3 / 256.0)
    assert vec.values == [2 * 2.2 / (2 + norm), 1 * 2.2 / (1 + norm)]


def test_query_values_are_ones_and_unique() -> None:
    query = Bm25().encode_query("Running runs, apples and APPLE; run!")
    assert query.tokens == ["run", "appl"]
    assert query.values == [1.0, 1.0]
    assert len(set(query.indices)) == len(query.indices) == 2
    assert all(isinstance(value, float) for value in query.values)


def test_documents_accept_any_iterable_and_keep_order() -> None:
    bm25 = Bm25()
    texts = ["alpha beta", "", "gamma"]
    assert bm25.encode_documents(iter(texts)) == bm25.encode_documents(texts)
    assert bm25.encode_documents([]) == []
    tokens = [vec.tokens for vec in bm25.encode_documents(texts)]
    assert tokens == [["alpha", "beta"], [], ["gamma"]]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"k": -0.1}, "k"),
        ({"k": math.nan}, "k"),
        ({"k": math.inf}, "k"),
        ({"b": -0.01}, "b"),
        ({"b": 1.01}, "b"),
        ({"avg_len": 0}, "avg_len"),
        ({"avg_len": -5.0}, "avg_len"),
        ({"avg_len": "256"}, "avg_len"),
        ({"token_max_length": -1}, "token_max_length"),
        ({"token_max_length": 4.5}, "token_max_length"),
        ({"language": "klingon"}, "language"),
    ],
)
def test_parameter_validation(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        Bm25(**kwargs)


def test_boundary_parameters_accepted() -> None:
    Bm25(k=0, b=0, avg_len=0.001)
    Bm25(b=1)
    Bm25(language="tamil")


def test_signature() -> None:
    default = Bm25().signature
    assert default == "qdrant-bm25|fastembed|english|k=1.2|b=0.75|avg_len=256|max_len=40"
    assert Bm25(k=1.2, b=0.75, avg_len=256, token_max_length=40).signature == default
    variants = [
        Bm25(k=1.5),
        Bm25(k=1.2000000001),
        Bm25(b=0.5),
        Bm25(avg_len=256.5),
        Bm25(avg_len=100),
        Bm25(token_max_length=41),
        Bm25(language="german"),
    ]
    signatures = {bm25.signature for bm25 in variants}
    assert default not in signatures and len(signatures) == len(variants)


def test_pickle_round_trip() -> None:
    bm25 = Bm25(k=1.4, avg_len=64)
    bm25.encode_documents(SENTENCES[:5])  # warm caches must not break pickling
    clone = pickle.loads(pickle.dumps(bm25))
    assert clone.signature == bm25.signature
    assert clone.encode_documents(SENTENCES[:20]) == bm25.encode_documents(SENTENCES[:20])


def test_sparse_vec_is_frozen() -> None:
    vec = SparseVec([1], [1.0], ["a"])
    with pytest.raises(AttributeError):
        vec.indices = []  # type: ignore[misc]

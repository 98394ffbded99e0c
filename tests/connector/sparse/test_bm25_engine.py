"""Tests for connector.sparse.bm25_engine: exact parity with Qdrant's built-in BM25.

The reference is ``qdrant_edge.Bm25``: the engine's own ``qdrant/bm25`` inference, in-process.
Vectors are compared exactly: indices, their (ascending) order, and values. The engine stores
float32 values; :class:`EngineBm25` returns those same float32 numbers as Python floats, so plain
float equality is exact equality.
"""

from __future__ import annotations

import math
import pickle
import random
import struct
import sys
import unicodedata
from collections.abc import Iterable
from typing import Any

import mmh3
import pytest
import qdrant_edge

from connector.sparse.bm25 import Bm25
from connector.sparse.bm25_engine import (
    ENGINE_STOPWORDS_FILE,
    EngineBm25,
    SparseVec,
    _split_words,
)
from tests.paths import FIXTURES

__all__: list[str] = []

FIXTURE = FIXTURES / "sentences.txt"


def _read_sentences() -> list[str]:
    # split("\n") rather than splitlines(): the fixture holds characters (e.g. \x1c) that
    # splitlines() would treat as line breaks.
    text = FIXTURE.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


SENTENCES = _read_sentences()

# Crafted inputs, each aimed at one step of the pipeline.
EDGE_CASES = [
    "",
    " ",
    "\t\n\r",
    # apostrophes and other punctuation split words; both halves may be stopwords
    "don't Don't DON'T won't shouldn't've",
    "O'Neil O\u2019Neil l'amour rock'n'roll",
    "rock-n-roll e-mail state-of-the-art --flag",
    "email@example.com https://qdrant.tech/path?q=1&x=2#frag",
    "'quoted' \"double\" (paren) [brack] {brace} <angle> |pipe| \\back/",
    # underscores separate (unlike fastembed's \w)
    "foo_bar _ __init__ snake_case_name _private trailing_ ___",
    # digits
    "3.14 3,14 1e10 0x1F 2024-01-01 v1.2.3-rc1 x86_64 C++ C# .NET",
    "\u216b \u217b \u2461 \u00bd \u00b2\u00b3 \u0663\u0664 \u0966\u0967 \U0001d7d8\U0001d7d9",
    # accents, composed and decomposed
    "caf\u00e9 na\u00efve fa\u00e7ade r\u00e9sum\u00e9 NA\u00cfVE Na\u00efve",
    "cafe\u0301 e\u0301 a\u0300b",
    # case mappings that change length or depend on context
    "Stra\u00dfe STRASSE \u00df \u1e9e",
    "\u0130stanbul ISTANBUL \u0131 I i \u0130 \u0130\u0130 I\u0307",
    "\u03a3\u0391\u03a3 \u039f\u0394\u039f\u03a3 \u03a3 \u03c3\u03c2 "
    "\u03a3\u03a3 a\u03a3 \u03a3a A\u03a3b",
    "\u03a3\u0345 A\u0345\u03a3 \u1f08\u03a3 \u03b1\u0301\u03a3 \u03a3\u02b0 A\u02b0\u03a3",
    "\u01c4 \u01c5 \u01c6 \u01c5ungla \u01c8 \u0149 \ufb01nance \ufb00 \ufb03 \u0390 \u017f",
    "\u212a \u212b \u2126 \u0132SSELMEER \u0133",
    "\u2160\u2161 \u2170\u2171 \u24b6 \u24d0b",
    # scripts where Rust's Alphabetic differs from Python's isalpha (combining vowel signs)
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u0928\u092e\u0938\u094d\u0924\u0947 "
    "\u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0645\u064e\u0631\u0652\u062d\u064e\u0628\u064b\u0627",
    "\u05e9\u05c1\u05b8\u05dc\u05d5\u05b9\u05dd",
    "a\u0345b x\u0363y",
    # CJK, Hangul, emoji, symbols
    "\u6771\u4eac\u30bf\u30ef\u30fc \u4e2d\u6587\u5b57 "
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\U0001f600 \U0001f44d\U0001f3fd x\U0001f600y \U0001f1fa\U0001f1f8 \u2764\ufe0f",
    "\U0001d400\U0001d41a math bold \U00010400\U00010428 deseret",
    "\uff21\uff42\uff43\uff11\uff12\uff13 fullwidth",
    # letters newer than Python 3.11's Unicode 14 (Garay, Latin additions, Beria Erfe)
    "\ua7da\ua7db \ua7dc \U00010d50\U00010d70 \U00016ea0\U00016ebb \u1c89\u1c8a",
    "\U00010d50\u03a3 A\u0897\u03a3 A\u03a3\U00010d50 \u0295\u03a3 A\U0001e030\u03a3",
    # whitespace and control characters
    "\u00a0nbsp\u2009thin\u200bzero\u200dwidth\u2028line\u2029para",
    "a\x00b\x1cc\x7fd",
    "tab\tnew\nline\rcr\x0bvt\x0cff",
    # long tokens (no length limit in the engine), repetition
    "x" * 41,
    "a" * 1000,
    "word " * 300,
    "running runs ran runner RUNNING Runs",
    # stopwords in any case; stems that are stopwords are kept
    "THE The tHe the AND And",
    "ALL CAPS SENTENCE WITH STOPWORDS IN IT",
    "wills thes hims ourselv",
]

# Lone surrogates cannot reach the engine (it refuses to encode them); everything else can.
_CODE_POINTS = [code for code in range(sys.maxunicode + 1) if not 0xD800 <= code < 0xE000]


@pytest.fixture(scope="module")
def engine() -> Any:
    return qdrant_edge.Bm25()


def _same(vec: SparseVec, reference: Any) -> bool:
    """Exact equality: same indices in the same order, same values (NaN equal to NaN)."""
    if vec.indices != list(reference.indices):
        return False
    return all(
        ours == theirs or (math.isnan(ours) and math.isnan(theirs))
        for ours, theirs in zip(vec.values, reference.values, strict=True)
    )


def _doc_mismatches(ours: EngineBm25, engine: Any, texts: list[str]) -> list[str]:
    got = ours.encode_documents(texts)
    assert len(got) == len(texts)
    return [
        text
        for text, vec in zip(texts, got, strict=True)
        if not _same(vec, engine.embed_document(text))
    ]


def _query_mismatches(ours: EngineBm25, engine: Any, texts: Iterable[str]) -> list[str]:
    return [text for text in texts if not _same(ours.encode_query(text), engine.embed_query(text))]


def _sweep_mismatches(engine: Any, template: str, codes: list[int]) -> list[str]:
    """Returns the tokens ``template.format(chr(code))`` whose vectors differ from the engine's.

    Many tokens go into one document (the engine is fast with long texts); only a chunk that
    differs is re-checked token by token, to name the culprits.
    """
    ours = EngineBm25()
    bad: list[str] = []
    for start in range(0, len(codes), 8192):
        tokens = [template.format(chr(code)) for code in codes[start : start + 8192]]
        text = " ".join(tokens)
        if not _same(ours.encode_documents([text])[0], engine.embed_document(text)):
            bad += _query_mismatches(ours, engine, tokens)
            bad += _doc_mismatches(ours, engine, tokens)
    return bad


def _sigma_sensitive_code_points() -> list[int]:
    """Engine-alphanumeric characters that may take part in the final-sigma rule.

    Every cased or case-ignorable letter lies below U+20000, and Python's Lo and Nd characters
    (CJK, Hangul, digits...) are neither, so the quick sweep leaves those out; characters
    unknown to Python (Cn) stay in. The slow sweep covers everything.
    """
    alphanumeric = _split_words(" ".join(chr(code) for code in _CODE_POINTS if code < 0x20000))
    return [ord(char) for char in alphanumeric if unicodedata.category(char) not in {"Lo", "Nd"}]


# --------------------------------------------------------------------------- reference sanity


def test_reference_is_the_default_english_engine() -> None:
    config = qdrant_edge.Bm25Config()
    assert (config.k, config.b, config.avg_len) == (1.2, 0.75, 256.0)
    assert config.tokenizer == qdrant_edge.TokenizerType.Word
    assert config.language is None and config.stemmer is None and config.max_token_len is None
    text = "The running dogs"
    assert _same(EngineBm25().encode_documents([text])[0], qdrant_edge.Bm25().embed_document(text))


def test_fixture_is_substantial() -> None:
    assert len(SENTENCES) >= 400
    assert any(not line.isascii() for line in SENTENCES)


def test_stopwords_are_the_engines(engine: Any) -> None:
    words = ENGINE_STOPWORDS_FILE.read_text(encoding="utf-8").splitlines()
    assert len(words) == 179 == len(set(words))
    # Every listed word, in any case, is dropped (words with an apostrophe split in two
    # stopwords); a stem that is a stopword is kept, as the check happens before stemming.
    for word in words:
        for variant in (word, word.upper(), word.title()):
            assert list(engine.embed_query(variant).indices) == [], variant
            assert EngineBm25().tokenize(variant) == [], variant
    assert EngineBm25().tokenize("wills") == ["will"]


# --------------------------------------------------------------------------- exact parity


def test_every_fixture_line_document_identical(engine: Any) -> None:
    assert _doc_mismatches(EngineBm25(), engine, SENTENCES) == []


def test_every_fixture_line_query_identical(engine: Any) -> None:
    assert _query_mismatches(EngineBm25(), engine, SENTENCES) == []


def test_edge_cases_identical(engine: Any) -> None:
    ours = EngineBm25()
    assert _doc_mismatches(ours, engine, EDGE_CASES) == []
    assert _query_mismatches(ours, engine, EDGE_CASES) == []
    # One document of everything at once: counts and document length across cases.
    everything = " ".join(EDGE_CASES)
    assert _doc_mismatches(ours, engine, [everything]) == []


def test_single_document_calls_match_batch() -> None:
    batch = EngineBm25().encode_documents(SENTENCES)
    assert [EngineBm25().encode_documents([text])[0] for text in SENTENCES] == batch


def test_all_short_ascii_words_identical(engine: Any) -> None:
    # Every a-z word of up to 3 letters: stopwords, stems and ids of the short vocabulary.
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = list(letters)
    words += [a + b for a in letters for b in letters]
    words += [a + b + c for a in letters for b in letters for c in letters]
    ours = EngineBm25()
    texts = [" ".join(words[i : i + 2000]) for i in range(0, len(words), 2000)]
    assert _doc_mismatches(ours, engine, texts) == []


def test_random_unicode_text_identical(engine: Any) -> None:
    # Characters chosen to stress the tokenizer: case mappings that change length or depend on
    # context (İ, ß, final sigma), combining marks inside and outside Alphabetic, connector
    # punctuation, digits, CJK, emoji, letters newer than Python's Unicode tables.
    pool = list(
        "aAbBzZ09_ \t\n'\u2019-.,!?\"()\u03a3\u03c3\u03c2\u0391\u0392\u039f\u0394\u0130\u0131Ii"
        "\u1e9e\u00df\u00c5\u00e5\u00e9\u0301\u0307\u0345\u02b0\u01c4\u01c5\u01c6\ufb01\u203f"
        "\uff3f\ufe4f\u30fb\u4e2d\u6587\u0928\u093f\u094d\u064e\ua7da\u0295\u0897"
        "\U0001f600\U0001f44d\U0001f3fd\U00010d50\U00010d70\U0001d400\u00a0\u200b"
    )
    words = [
        "running",
        "Runs",
        "the",
        "THE",
        "O'Neil",
        "don't",
        "x" * 41,
        "foo_bar",
        "\u03a3\u03a3",
    ]
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
    ours = EngineBm25()
    assert _doc_mismatches(ours, engine, texts) == []
    assert _query_mismatches(ours, engine, texts[::3]) == []


def test_code_points_in_context_identical(engine: Any) -> None:
    # Tokenizing (is the character part of a word?), lowercasing and stemming of every BMP and
    # plane-1 code point, and a sample of the rest (CJK extensions, private use, unassigned).
    codes = [code for code in _CODE_POINTS if code < 0x20000 or code % 97 == 0]
    assert _sweep_mismatches(engine, "qq{}zz", codes) == []


def test_final_sigma_contexts_identical(engine: Any) -> None:
    # The engine lowercases Σ to ς or σ depending on its neighbours' Cased / Case_Ignorable
    # properties, which Python only knows for its own (older) Unicode version.
    codes = _sigma_sensitive_code_points()
    assert len(codes) > 10_000
    for template in ("{}\u03a3", "A{}\u03a3", "A\u03a3{}"):
        assert _sweep_mismatches(engine, template, codes) == [], template


@pytest.mark.slow
@pytest.mark.parametrize(
    "template", ["qq{}zz", "{}", "{0}{0}", "{}\u03a3", "A{}\u03a3", "A\u03a3{}", "\u03a3{}a"]
)
def test_every_code_point_identical(engine: Any, template: str) -> None:
    assert _sweep_mismatches(engine, template, _CODE_POINTS) == []


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("k", "avg_len", "doc_len"),
    [
        (0.3810998947962936, 124.26381193894997, 12),
        (1.4110540105215097, 124.05570723100789, 28),
        (1.619645450573017, 117.6303992934264, 38),
        (1.1213781705810395, 200.14120240847137, 28),
        (0.31927467386732866, 336.7044695740067, 25),
    ],
)
def test_values_use_a_fused_multiply_add(
    engine: Any, k: float, avg_len: float, doc_len: int
) -> None:
    # Parameters searched for so that k * norm + n rounded twice (multiply, then add) gives a
    # different float32 value than rounded once, as Rust's f64::mul_add does.
    text = " ".join(f"w{i}x" for i in range(doc_len))
    ours = EngineBm25(k=k, b=1.0, avg_len=avg_len)
    reference = qdrant_edge.Bm25(qdrant_edge.Bm25Config(k=k, b=1.0, avg_len=avg_len))
    assert _doc_mismatches(ours, reference, [text]) == []
    (value,) = set(ours.encode_documents([text])[0].values)
    norm = 1.0 - 1.0 + 1.0 * doc_len / avg_len
    unfused = struct.unpack("<f", struct.pack("<f", (k + 1.0) / (k * norm + 1.0)))[0]
    assert value != unfused


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
        # extremes: values of 0, NaN (0 * inf) and inf, exactly as the engine's IEEE arithmetic
        {"k": 1e300},
        {"avg_len": 1e-300},
        {"k": 0.0, "avg_len": 1e-320},
        {"k": 1e308, "b": 0.0},
    ],
)
def test_parameter_variants_identical(engine: Any, params: dict[str, float]) -> None:
    reference = qdrant_edge.Bm25(qdrant_edge.Bm25Config(**params))
    subset = SENTENCES[::4] + SENTENCES[-25:] + ["apple apple pear " * 40]
    ours = EngineBm25(**params)
    assert _doc_mismatches(ours, reference, subset) == []
    assert _query_mismatches(ours, reference, subset[::5]) == []


def test_values_are_float32() -> None:
    values = [value for vec in EngineBm25().encode_documents(SENTENCES) for value in vec.values]
    assert values and all(
        struct.unpack("<f", struct.pack("<f", value))[0] == value for value in values
    )


def test_value_formula() -> None:
    vec = EngineBm25().encode_documents(["apple apple pear"])[0]
    apple, pear = (vec.values[vec.tokens.index(stem)] for stem in ("appl", "pear"))
    norm = 1.2 * (1 - 0.75 + 0.75 * 3 / 256.0)
    assert apple == pytest.approx(2 * 2.2 / (2 + norm), rel=1e-7)
    assert pear == pytest.approx(1 * 2.2 / (1 + norm), rel=1e-7)


def test_hash_collisions(engine: Any) -> None:
    # Pre-computed stems with the same abs(mmh3 hash). The engine counts stems in a HashMap
    # with a random seed, so which colliding stem's value survives changes from call to call;
    # EngineBm25 deterministically keeps the larger value, one the engine also produces.
    first, second = "zq50984", "zq98319"
    ours = EngineBm25()
    assert ours.term_id(first) == ours.term_id(second)
    text = f"{first} {second} {second}"
    possible = {tuple(engine.embed_document(text).values) for _ in range(64)}
    vec = ours.encode_documents([text])[0]
    assert vec.indices == [ours.term_id(first)]
    assert (vec.values[0],) in possible and vec.values[0] == max(v for (v,) in possible)
    assert vec.tokens == [second]
    assert ours.encode_documents([f"{second} {first} {second}"]) == [vec]
    assert _query_mismatches(ours, engine, [text]) == []
    assert ours.encode_query(text).tokens == [first]


# --------------------------------------------------------------------------- the two flavours


def test_flavours_differ_on_real_text() -> None:
    fastembed_flavour = Bm25().encode_documents(SENTENCES)
    engine_flavour = EngineBm25().encode_documents(SENTENCES)

    pairs = list(zip(fastembed_flavour, engine_flavour, strict=True))
    # Exact vectors: every line with a kept token differs, because fastembed's values are
    # float64 and the engine's float32 ...
    exact = sum(
        sorted(zip(a.indices, a.values, strict=True))
        != sorted(zip(b.indices, b.values, strict=True))
        for a, b in pairs
    )
    # ... but Qdrant stores float32, and at that precision only the tokenizer differences remain:
    # underscores, tokens over 40 characters, İ, combining vowel signs (Devanagari) and the like.
    indices = sum(set(a.indices) != set(b.indices) for a, b in pairs)
    stored = sum(
        sorted((i, _f32(v)) for i, v in zip(a.indices, a.values, strict=True))
        != sorted(zip(b.indices, b.values, strict=True))
        for a, b in pairs
    )
    # Measured on the fixture: 420 of 422 lines differ exactly (the other two are empty in
    # both flavours), 6 differ in their indices, and float32 rounding leaves exactly those 6.
    assert exact >= 0.95 * len(SENTENCES)
    assert 5 <= indices <= stored < 0.05 * len(SENTENCES)
    # Pure ASCII lines without an underscore or an over-long token never differ in indices.
    for text, (a, b) in zip(SENTENCES, pairs, strict=True):
        if text.isascii() and "_" not in text and all(len(w) <= 40 for w in text.split()):
            assert set(a.indices) == set(b.indices), text


def test_flavours_agree_on_simple_lowercase_ascii() -> None:
    text = "the quick brown fox jumps over the lazy dog and runs away"
    fastembed_vec = Bm25().encode_documents([text])[0]
    engine_vec = EngineBm25().encode_documents([text])[0]
    assert sorted(fastembed_vec.tokens) == sorted(engine_vec.tokens)
    assert sorted(zip(fastembed_vec.indices, map(_f32, fastembed_vec.values), strict=True)) == list(
        zip(engine_vec.indices, engine_vec.values, strict=True)
    )
    fastembed_query = Bm25().encode_query(text)
    engine_query = EngineBm25().encode_query(text)
    assert sorted(zip(fastembed_query.indices, fastembed_query.values, strict=True)) == list(
        zip(engine_query.indices, engine_query.values, strict=True)
    )


def test_flavours_differ_on_underscores_and_long_tokens() -> None:
    text = "snake_case " + "x" * 41
    assert Bm25().tokenize(text) == ["snake_cas"]
    assert EngineBm25().tokenize(text) == ["snake", "case", "x" * 41]


# --------------------------------------------------------------------------- behaviour


def test_tokenize_and_term_id() -> None:
    ours = EngineBm25()
    assert ours.tokenize("The running of the Bulls, isn't it? foo_bar") == [
        "run",
        "bull",
        "foo",
        "bar",
    ]
    assert ours.term_id("run") == abs(mmh3.hash("run")) == 243905464
    assert ours.term_id("run") == Bm25().term_id("run")
    vec = ours.encode_documents(["zebra apple zebra"])[0]
    assert vec.indices == sorted(vec.indices)
    assert [ours.term_id(token) for token in vec.tokens] == vec.indices


def test_empty_inputs() -> None:
    ours = EngineBm25()
    empty = SparseVec([], [], [])
    assert ours.encode_documents(["", "   ", "the and of", "!!! ... ---", "_"]) == [empty] * 5
    assert ours.encode_query("the of ?") == empty
    assert ours.encode_documents([]) == []
    assert ours.encode_documents(iter(["alpha"])) == ours.encode_documents(["alpha"])


def test_query_values_are_ones_and_unique() -> None:
    query = EngineBm25().encode_query("Running runs, apples and APPLE; run!")
    assert query.values == [1.0, 1.0]
    assert query.indices == sorted(query.indices) and len(set(query.indices)) == 2
    assert sorted(query.tokens) == ["appl", "run"]


def test_lone_surrogates_separate_tokens() -> None:
    # The engine cannot encode them (UnicodeEncodeError); here they act like punctuation.
    assert EngineBm25().tokenize("ab\ud800cd") == ["ab", "cd"]


@pytest.mark.parametrize(
    ("kwargs", "name", "engine_rejects"),
    [
        ({"k": -0.1}, "k", True),
        ({"k": math.nan}, "k", True),
        ({"k": math.inf}, "k", True),
        ({"b": -0.01}, "b", True),
        ({"b": 1.01}, "b", True),
        ({"b": math.nan}, "b", True),
        ({"avg_len": 0.0}, "avg_len", True),
        ({"avg_len": -5.0}, "avg_len", True),
        ({"avg_len": math.inf}, "avg_len", True),
        ({"language": "English"}, "language", True),
        ({"language": "none"}, "language", True),
        # Supported by the engine, but not verified (stopwords, stemmer) here.
        ({"language": "french"}, "language", False),
        ({"avg_len": "256"}, "avg_len", None),
        ({"k": True}, "k", None),
    ],
)
def test_parameter_validation(
    kwargs: dict[str, Any], name: str, engine_rejects: bool | None
) -> None:
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        EngineBm25(**kwargs)
    if engine_rejects:
        with pytest.raises(ValueError):
            qdrant_edge.Bm25(qdrant_edge.Bm25Config(**kwargs))


def test_boundary_parameters_accepted() -> None:
    EngineBm25(k=0, b=0, avg_len=0.001)
    EngineBm25(b=1)
    EngineBm25(k=3, avg_len=100)


def test_signature() -> None:
    default = EngineBm25().signature
    assert default == "qdrant-bm25|engine|english|k=1.2|b=0.75|avg_len=256"
    assert default != Bm25().signature
    assert EngineBm25(k=1.2, b=0.75, avg_len=256).signature == default
    variants = [
        EngineBm25(k=1.5),
        EngineBm25(k=1.2000000001),
        EngineBm25(b=0.5),
        EngineBm25(avg_len=256.5),
        EngineBm25(avg_len=100),
    ]
    signatures = {encoder.signature for encoder in variants}
    assert default not in signatures and len(signatures) == len(variants)
    assert repr(EngineBm25()) == f"EngineBm25({default!r})"


def test_pickle_round_trip() -> None:
    ours = EngineBm25(k=1.4, avg_len=64)
    ours.encode_documents(SENTENCES[:5])  # warm caches must not break pickling
    clone = pickle.loads(pickle.dumps(ours))
    assert clone.signature == ours.signature
    assert clone.encode_documents(SENTENCES[:20]) == ours.encode_documents(SENTENCES[:20])


def _f32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]

"""Tests for connector.sparse.bm42 (``qdrant-minilm-attention``) with the bundled MiniLM.

fastembed's own BM42 runs an ONNX export that cannot be downloaded here, so parity with it is
checked in two halves that need no ONNX model: its query side (tokenizer only) is run as is, and
its document post-processing (word reconstruction, filtering, stemming, max, rescoring, hashing)
is fed the attention our PyTorch model computes for the token ids fastembed's tokenizer produced.
An independent, deliberately plain re-implementation in this file checks the attention side.
"""

from __future__ import annotations

import math
import pickle
import shutil
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import mmh3
import pytest

from connector.errors import ModelError
from connector.sparse.bm25 import STOPWORDS_DIR, Bm25
from connector.sparse.bm42 import Bm42, SparseVec
from tests.paths import FIXTURES

__all__: list[str] = []

FIXTURE = FIXTURES / "sentences.txt"
STOPWORDS = frozenset((STOPWORDS_DIR / "english.txt").read_text(encoding="utf-8").splitlines())

SENTENCES_EN = [
    "The quick brown fox jumps over the lazy dog near the riverbank",
    "We went to the store and bought some milk, then visited the planetarium.",
    "She said that the mitochondria is very important for the cell.",
    "I think this is a good thing for everyone who has a saxophone.",
    "The dog chased another dog across the dog park",
    "Running shoes are running out; the runner keeps running.",
    "Photosynthesis converts light energy into chemical energy (mostly in leaves)!",
    "Hello, world! The riverbank\u2019s \u00c9COLE na\u00efve caf\u00e9 -- isn't it?",
    "a",
    "Qdrant stores dense and sparse vectors side by side for hybrid search.",
]


def _read_fixture() -> list[str]:
    # split("\n"), not splitlines(): the fixture holds characters splitlines() breaks on.
    return FIXTURE.read_text(encoding="utf-8")[:-1].split("\n")


def _pairs(vec: SparseVec) -> list[tuple[int, float]]:
    return sorted(zip(vec.indices, vec.values, strict=True))


def _by_token(vec: SparseVec) -> dict[str, float]:
    return dict(zip(vec.tokens, vec.values, strict=True))


def _assert_close(got: SparseVec, expected: SparseVec, tol: float = 1e-5) -> None:
    assert got.indices == expected.indices
    assert got.tokens == expected.tokens
    for a, b in zip(got.values, expected.values, strict=True):
        assert a == pytest.approx(b, abs=tol)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bm42() -> Bm42:
    encoder = Bm42()
    encoder.encode_documents(["warm up"])  # loads tokenizer and model once for the module
    return encoder


@pytest.fixture(scope="module")
def hf(bm42: Bm42) -> tuple[Any, Any]:
    """A separately loaded tokenizer and model, for the plain reference implementation."""
    from transformers import AutoModel, AutoTokenizer

    from connector.dense import resolve_model_path

    path = resolve_model_path("all-MiniLM-L6-v2")
    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    return AutoTokenizer.from_pretrained(path), model


def _reference_occurrences(hf: tuple[Any, Any], text: str) -> list[tuple[str, float]]:
    """(stem, weight) for every kept word occurrence of ``text``, computed one text at a time."""
    import torch
    from py_rust_stemmers import SnowballStemmer

    tokenizer, model = hf
    encoded = tokenizer(text, truncation=True, max_length=512, return_tensors="pt")
    with torch.inference_mode():
        attentions = model(**encoded, output_attentions=True).attentions
    # Last layer, first (only) text, mean over heads, the row of the [CLS] query.
    cls_row = attentions[-1][0].mean(dim=0)[0].tolist()
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])

    words: list[list[Any]] = []  # [word, weight]
    for token, weight in zip(tokens, cls_row, strict=True):
        if token in tokenizer.all_special_tokens:
            continue
        if token.startswith("##") and words:
            words[-1][0] += token[2:]
            words[-1][1] += weight
        else:
            words.append([token, weight])
    stemmer = SnowballStemmer("english")
    return [
        (stemmer.stem_word(word), weight)
        for word, weight in words
        if word not in STOPWORDS and word not in string.punctuation
    ]


def _reference_vector(hf: tuple[Any, Any], text: str) -> dict[str, float]:
    best: dict[str, float] = {}
    for stem, weight in _reference_occurrences(hf, text):
        best[stem] = max(best.get(stem, 0.0), weight)
    return {stem: math.log(1 + weight) ** 0.5 for stem, weight in best.items()}


# --------------------------------------------------------------------------- module basics


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, connector.sparse.bm42\n"
        "heavy = {'torch', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_signature_and_validation() -> None:
    assert Bm42().signature == "qdrant-minilm-attention|all-MiniLM-L6-v2|alpha=0.5"
    assert Bm42("m", alpha=1).signature == "qdrant-minilm-attention|m|alpha=1"
    assert Bm42(alpha=0.25).signature != Bm42().signature
    for bad in ({"batch_size": 0}, {"batch_size": 1.5}, {"alpha": -1.0}, {"alpha": math.nan}):
        with pytest.raises(ValueError):
            Bm42(**bad)
    with pytest.raises(ValueError):
        Bm42("")


def test_pickles_without_the_model(bm42: Bm42) -> None:
    clone = pickle.loads(pickle.dumps(bm42))
    assert clone.signature == bm42.signature
    assert clone.device == bm42.device


def test_unloadable_model_raises_model_error(tmp_path: Path) -> None:
    broken = tmp_path / "not-a-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    encoder = Bm42(str(broken))
    with pytest.raises(ModelError, match="not-a-model"):
        encoder.encode_documents(["some text"])
    with pytest.raises(ModelError, match="not-a-model"):
        encoder.encode_query("some text")


def test_max_length_and_truncation(bm42: Bm42) -> None:
    assert bm42.max_length == 512
    long_text = " ".join(f"word{i}" for i in range(2000))
    (vec,) = bm42.encode_documents([long_text])
    assert 0 < len(vec.indices) < 2000


def test_to_keeps_results(bm42: Bm42) -> None:
    before = bm42.encode_documents(SENTENCES_EN[:2])
    bm42.to("cpu")
    assert bm42.device == "cpu"
    for got, expected in zip(bm42.encode_documents(SENTENCES_EN[:2]), before, strict=True):
        _assert_close(got, expected, tol=0)


# --------------------------------------------------------------------------- documents


@pytest.mark.parametrize(
    ("text", "specific", "common"),
    [
        ("The quick brown fox jumps over the lazy dog near the riverbank", "riverbank", "near"),
        (
            "We went to the store and bought some milk, then visited the planetarium.",
            "planetarium",
            "went",
        ),  # noqa: E501
        ("She said that the mitochondria is very important for the cell.", "mitochondria", "said"),
        ("I think this is a good thing for everyone who has a saxophone.", "saxophon", "think"),
    ],
)
def test_specific_word_outweighs_common_one(
    bm42: Bm42, text: str, specific: str, common: str
) -> None:
    weights = _by_token(bm42.encode_documents([text])[0])
    # The margins are wide (about 2-4x), so the assertion does not hinge on float noise.
    assert weights[specific] > 1.5 * weights[common]
    if specific != "riverbank":
        assert max(weights, key=weights.__getitem__) == specific


def test_stopwords_and_punctuation_are_dropped(bm42: Bm42) -> None:
    text = "It's what they'd do -- and, of course, they were right: isn't it?! (Yes.)"
    (vec,) = bm42.encode_documents([text])
    assert vec.tokens == ["cours", "right", "yes"]
    assert not set(vec.tokens) & STOPWORDS
    assert not any(set(token) <= set(string.punctuation) for token in vec.tokens)


def test_stopwords_are_tested_on_words_not_stems(bm42: Bm42) -> None:
    # fastembed filters the reconstructed word, then stems: "mostly" is no stopword, its stem
    # "most" is, and it stays. Matching that order is what keeps the ids compatible.
    (vec,) = bm42.encode_documents(["They were mostly right."])
    assert vec.tokens == ["most", "right"]


def test_stems_and_word_pieces(bm42: Bm42) -> None:
    (vec,) = bm42.encode_documents(["Running runners ran near the riverbank"])
    assert "run" in vec.tokens and "running" not in vec.tokens
    assert "runner" in vec.tokens
    # "riverbank" is two word pieces (river ##bank); they are glued back before stemming.
    assert "riverbank" in vec.tokens and "river" not in vec.tokens and "bank" not in vec.tokens


def test_values_are_positive_and_finite(bm42: Bm42) -> None:
    for vec in bm42.encode_documents(SENTENCES_EN):
        assert all(math.isfinite(v) and v > 0 for v in vec.values)
        # ln(1 + w) ** 0.5 with 0 < w <= 1 (an attention weight sum) stays below sqrt(ln 2).
        assert all(v <= math.log(2) ** 0.5 + 1e-6 for v in vec.values)
        assert len(set(vec.indices)) == len(vec.indices)
        assert len(vec.indices) == len(vec.values) == len(vec.tokens)


def test_matches_plain_reference(bm42: Bm42, hf: tuple[Any, Any]) -> None:
    for text, vec in zip(SENTENCES_EN, bm42.encode_documents(SENTENCES_EN), strict=True):
        expected = _reference_vector(hf, text)
        assert set(vec.tokens) == set(expected), text
        for token, value in _by_token(vec).items():
            assert value == pytest.approx(expected[token], abs=1e-5), (text, token)


def test_repeated_stem_keeps_its_max_weight(bm42: Bm42, hf: tuple[Any, Any]) -> None:
    text = "My dog likes the neighbour's dog more than our old dog"
    dog = [w for stem, w in _reference_occurrences(hf, text) if stem == "dog"]
    assert len(dog) == 3
    # The middle occurrence weighs most (by ~10%, far above float noise), so keeping the max is
    # told apart from keeping the first, the last or the sum.
    assert dog[1] > 1.05 * max(dog[0], dog[2])
    (vec,) = bm42.encode_documents([text])
    assert vec.tokens.count("dog") == 1
    assert _by_token(vec)["dog"] == pytest.approx(math.log(1 + max(dog)) ** 0.5, abs=1e-5)
    assert _by_token(vec)["dog"] != pytest.approx(math.log(1 + sum(dog)) ** 0.5, abs=1e-3)


def test_alpha_is_the_exponent(bm42: Bm42) -> None:
    text = SENTENCES_EN[0]
    half = _by_token(bm42.encode_documents([text])[0])
    full = _by_token(Bm42(alpha=1.0).encode_documents([text])[0])
    assert half.keys() == full.keys()
    for token, value in half.items():
        assert full[token] == pytest.approx(value**2, rel=1e-6)


def test_ids_are_bm25_ids(bm42: Bm42) -> None:
    bm25 = Bm25()
    for vec in bm42.encode_documents(SENTENCES_EN):
        assert vec.indices == [bm25.term_id(stem) for stem in vec.tokens]
        assert vec.indices == [abs(mmh3.hash(stem)) for stem in vec.tokens]
    # For plain words both tokenizers find the same words, hence exactly the same terms.
    text = "Qdrant stores dense and sparse vectors side by side for hybrid search"
    (vec,) = bm42.encode_documents([text])
    assert set(vec.indices) == {bm25.term_id(stem) for stem in bm25.tokenize(text)}


def test_batch_equals_one_by_one(bm42: Bm42) -> None:
    texts = [*SENTENCES_EN, "", "the and of", *SENTENCES_EN[:3]]
    together = bm42.encode_documents(texts)
    assert len(together) == len(texts)
    for text, vec in zip(texts, together, strict=True):
        _assert_close(vec, bm42.encode_documents([text])[0])
    # Several batches (length-sorted across them) give the same vectors in input order.
    small = Bm42(batch_size=3)
    for got, expected in zip(small.encode_documents(texts), together, strict=True):
        _assert_close(got, expected)


def test_batches_group_similar_lengths() -> None:
    lengths = [40, 512, 10, 38, 30, 200, 21]
    batches = Bm42(batch_size=2)._batches(list(range(len(lengths))), lengths)
    # Longest first, at most batch_size each, and no text padded to more than twice its length.
    assert batches == [[1], [5], [0, 3], [4, 6], [2]]
    assert Bm42()._batches([0, 3, 4], lengths) == [[0, 3, 4]]


@pytest.mark.gpu
def test_cuda_matches_cpu(bm42: Bm42) -> None:
    cpu = bm42.encode_documents(SENTENCES_EN)
    encoder = Bm42(device="cuda")
    for got, expected in zip(encoder.encode_documents(SENTENCES_EN), cpu, strict=True):
        _assert_close(got, expected, tol=1e-4)
    encoder.to("cpu")
    for got, expected in zip(encoder.encode_documents(SENTENCES_EN), cpu, strict=True):
        _assert_close(got, expected)


def test_empty_inputs(bm42: Bm42) -> None:
    assert bm42.encode_documents([]) == []
    empty = SparseVec([], [], [])
    assert bm42.encode_documents(["", "   ", "the of and", "?!, ."]) == [empty] * 4
    assert bm42.encode_query("") == empty
    assert bm42.encode_query("to be or not to be") == empty
    assert bm42.term_ids("") == []


# --------------------------------------------------------------------------- queries and terms


def test_query_values_are_one_and_ids_unique(bm42: Bm42) -> None:
    for text in SENTENCES_EN:
        query = bm42.encode_query(text)
        (doc,) = bm42.encode_documents([text])
        assert query.values == [1.0] * len(query.indices)
        assert len(set(query.indices)) == len(query.indices)
        assert set(query.indices) == set(doc.indices)
        assert query.indices == [abs(mmh3.hash(stem)) for stem in query.tokens]


def test_query_does_not_load_the_model() -> None:
    encoder = Bm42()
    assert encoder.encode_query("Running shoes").tokens == ["run", "shoe"]
    assert encoder._model is None


def test_term_ids(bm42: Bm42) -> None:
    bm25 = Bm25()
    assert bm42.term_ids("Running shoes") == [
        (bm25.term_id("run"), "run"),
        (bm25.term_id("shoe"), "shoe"),
    ]
    assert bm42.term_ids("the running, running SHOES!") == bm42.term_ids("Running shoes")
    assert bm42.term_ids("riverbank") == [(bm25.term_id("riverbank"), "riverbank")]


# --------------------------------------------------------------------------- fastembed parity


@pytest.fixture(scope="module")
def fastembed_bm42(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from fastembed.sparse import bm42 as module

    from connector.dense import resolve_model_path

    # The tokenizer files of the bundled MiniLM plus our stopwords: everything fastembed's BM42
    # reads besides model.onnx, which lazy_load never opens on these code paths.
    model_dir = tmp_path_factory.mktemp("bm42_model")
    source = Path(resolve_model_path("all-MiniLM-L6-v2"))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, model_dir / name)
    shutil.copy(source / "config.json", model_dir / "config.json")
    shutil.copy(STOPWORDS_DIR / "english.txt", model_dir / "stopwords.txt")
    return module.Bm42(
        "Qdrant/bm42-all-minilm-l6-v2-attentions",
        specific_model_path=str(model_dir),
        cache_dir=str(tmp_path_factory.mktemp("fastembed_cache")),
        lazy_load=True,
    )


def test_queries_identical_to_fastembed(bm42: Bm42, fastembed_bm42: Any) -> None:
    texts = [*_read_fixture(), *SENTENCES_EN]
    mismatches = []
    for text, ref in zip(texts, fastembed_bm42.query_embed(texts), strict=True):
        expected = sorted(zip(ref.indices.tolist(), map(float, ref.values.tolist()), strict=True))
        if _pairs(bm42.encode_query(text)) != expected:
            mismatches.append(text)
    assert mismatches == []


def test_documents_match_fastembed_postprocessing(
    bm42: Bm42, hf: tuple[Any, Any], fastembed_bm42: Any
) -> None:
    import numpy as np
    import torch
    from fastembed.common.onnx_model import OnnxOutputContext

    fastembed_bm42._ensure_tokenizer()
    tokenizer = fastembed_bm42.tokenizer
    # The shorter half of the fixture (its tricky characters are mostly in short lines) keeps
    # the CPU time low; one text past the 512-token limit checks that truncation agrees too.
    fixture = sorted(_read_fixture(), key=lambda t: len(tokenizer.encode(t).ids))
    short = [*fixture[: len(fixture) // 2], *SENTENCES_EN]
    long_text = " ".join(["zebra crossing"] * 400)
    texts = [*short, long_text]
    ours = bm42.encode_documents(texts)

    # What the ONNX export computes: all of the model's attention matrices, from eager attention
    # (ours computes only the [CLS] row of the last layer).
    _, model = hf
    expected: list[Any] = []
    # The long text runs alone: padding 31 short texts to 512 tokens would cost seconds.
    batches = [short[start : start + 32] for start in range(0, len(short), 32)] + [[long_text]]
    for batch in batches:
        encodings = tokenizer.encode_batch(batch)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        with torch.inference_mode():
            attentions = model(
                input_ids=torch.from_numpy(ids),
                attention_mask=torch.from_numpy(mask),
                output_attentions=True,
            ).attentions
        # What the ONNX export returns as "attention_6": the last layer, all heads.
        context = OnnxOutputContext(
            model_output=attentions[-1].numpy(), attention_mask=mask, input_ids=ids
        )
        expected.extend(fastembed_bm42._post_process_onnx_output(context))

    mismatches = []
    for text, vec, ref in zip(texts, ours, expected, strict=True):
        ref_pairs = sorted(zip(ref.indices.tolist(), ref.values.tolist(), strict=True))
        got = _pairs(vec)
        if [i for i, _ in got] != [i for i, _ in ref_pairs] or any(
            abs(a - b) > 1e-5 for (_, a), (_, b) in zip(got, ref_pairs, strict=True)
        ):
            mismatches.append(text)
    assert mismatches == []
    assert sum(1 for vec in ours if vec.indices) > len(texts) * 0.9  # not vacuously equal

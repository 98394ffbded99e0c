"""Tests for connector.sparse.splade, on a tiny randomly initialised BERT masked-LM built here.

The model's weights are random, so nothing here relies on retrieval quality; the tests check the
plumbing: loading both checkpoint layouts, the index space, the conversion of SparseEncoder's
sparse tensors, batching, the query/document split, truncation and the error paths.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.errors import ModelError
from connector.sparse.splade import SparseVec, Splade

__all__: list[str] = []

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "A small cat sleeps on the warm mat in the kitchen.",
    "Rain fell all night and the streets were wet in the morning.",
    "She bought fresh bread, cheese and apples at the market.",
    "The train to the city leaves from platform four at noon.",
    "Children played football in the park until the sun went down.",
    "Our server stores every document in a vector database.",
    "He reads old books about ships, maps and distant islands.",
    "The garden has roses, tulips and a tall green tree.",
    "Please send the report to the team before friday.",
    "Music from the piano filled the quiet house.",
    "Mountains covered with snow rise above the valley.",
    "query passage",
]
# WordPiece continuations, so that inflected forms split into known pieces ("parks" -> park ##s).
PIECES = ["##s", "##ing", "##ed"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = sorted({w for s in SENTENCES for w in re.findall(r"\w+|[^\w\s]", s.lower())})
VOCAB = SPECIAL + WORDS + PIECES
# The saved SparseEncoder copy gets prompts, so its query and document sides differ.
QUERY_PROMPT = "query "
DOCUMENT_PROMPT = "passage "


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Run this module's tiny forward passes on one thread, restoring the setting afterwards.

    The model is so small that intra-op thread hand-offs dominate: on a busy two-core machine a
    forward pass took ~20x longer with torch's default thread count than with one thread.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain Hugging Face masked-LM folder: BertForMaskedLM with random weights + tokenizer."""
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = tmp_path_factory.mktemp("tiny-mlm")
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    tokenizer = transformers.BertTokenizer.from_pretrained(str(path))
    assert len(tokenizer) == len(VOCAB)
    config = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(1234)
    transformers.BertForMaskedLM(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_splade(tiny_mlm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights saved by ``SparseEncoder.save``, with query/document prompts."""
    from sentence_transformers import SparseEncoder

    path = tmp_path_factory.mktemp("tiny-splade")
    model = SparseEncoder(
        str(tiny_mlm), device="cpu", prompts={"query": QUERY_PROMPT, "document": DOCUMENT_PROMPT}
    )
    # No model card: writing one multiplies sparse tensors, which makes torch warn that sparse
    # CSR support is in beta (a UserWarning); the card plays no part in loading.
    model.save(str(path), create_model_card=False)
    return path


@pytest.fixture(scope="module")
def tokenizer(tiny_mlm: Path) -> Any:
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(tiny_mlm))


@pytest.fixture(scope="module")
def plain(tiny_mlm: Path) -> Splade:
    return Splade(str(tiny_mlm), batch_size=4)


def _as_dict(vec: SparseVec) -> dict[int, float]:
    return dict(zip(vec.indices, vec.values, strict=True))


def _assert_close(a: SparseVec, b: SparseVec, tol: float = 1e-5) -> None:
    # Compared as maps with missing = 0: a weight within float noise of zero may be present on
    # one side and absent on the other.
    da, db = _as_dict(a), _as_dict(b)
    for i in da.keys() | db.keys():
        assert abs(da.get(i, 0.0) - db.get(i, 0.0)) <= tol, (i, da.get(i), db.get(i))


def _dot(a: SparseVec, b: SparseVec) -> float:
    db = _as_dict(b)
    return sum(v * db.get(i, 0.0) for i, v in zip(a.indices, a.values, strict=True))


# -- loading ----------------------------------------------------------------------------------


def test_loads_lazily(tmp_path: Path) -> None:
    # A bad path only fails when the model is needed: building the encoder must stay cheap.
    encoder = Splade(str(tmp_path), max_length=16)
    assert encoder._model is None
    assert encoder.signature == f"splade|{tmp_path}|max_len=16"
    assert encoder._model is None


def test_plain_mlm_is_wrapped_as_transformer_plus_splade_pooling(plain: Splade) -> None:
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    modules = list(plain.model)
    assert len(modules) == 2
    assert isinstance(modules[0], Transformer)
    assert modules[0].transformer_task == "fill-mask"
    assert isinstance(modules[1], SpladePooling)
    assert modules[1].pooling_strategy == "max"


def test_saved_sparse_encoder_checkpoint_loads(tiny_splade: Path, plain: Splade) -> None:
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    saved = Splade(str(tiny_splade))
    assert isinstance(list(saved.model)[-1], SpladePooling)
    # Same weights: with the document prompt spelled out, the plain model gives the same vector.
    text = SENTENCES[0]
    _assert_close(
        saved.encode_documents([text])[0], plain.encode_documents([DOCUMENT_PROMPT + text])[0]
    )


def test_legacy_mlm_transformer_layout_loads(
    tiny_splade: Path, tmp_path: Path, plain: Splade
) -> None:
    # Hub SPLADE checkpoints saved by sentence-transformers 5.x name the legacy MLMTransformer.
    legacy = tmp_path / "legacy"
    shutil.copytree(tiny_splade, legacy)
    modules_file = legacy / "modules.json"
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    modules[0]["type"] = "sentence_transformers.sparse_encoder.models.MLMTransformer"
    modules[1]["type"] = "sentence_transformers.sparse_encoder.models.SpladePooling"
    modules_file.write_text(json.dumps(modules), encoding="utf-8")

    encoder = Splade(str(legacy))
    text = SENTENCES[1]
    _assert_close(encoder.encode_query(text), plain.encode_documents([QUERY_PROMPT + text])[0])


def test_unloadable_path_raises_model_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    encoder = Splade(str(empty))
    with pytest.raises(ModelError, match=re.escape(repr(str(empty)))) as info:
        encoder.encode_query("cat")
    assert "cannot load" in str(info.value)
    assert "\n" not in str(info.value)


def test_non_mlm_checkpoint_is_refused(tiny_mlm: Path, tmp_path: Path) -> None:
    # A plain encoder would be wrapped as CSR (untrained sparse auto-encoder): not vocabulary ids.
    import transformers

    path = tmp_path / "bert-encoder"
    config = transformers.BertConfig.from_pretrained(str(tiny_mlm))
    config.architectures = None
    transformers.BertModel(config).save_pretrained(str(path))
    transformers.AutoTokenizer.from_pretrained(str(tiny_mlm)).save_pretrained(str(path))
    with pytest.raises(ModelError, match="not a SPLADE model"):
        Splade(str(path)).encode_documents(["cat"])


def test_bad_options_raise_value_error() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        Splade("x", batch_size=0)
    with pytest.raises(ValueError, match="max_length"):
        Splade("x", max_length=0)
    with pytest.raises(ValueError, match="model"):
        Splade(" ")


# -- vectors ----------------------------------------------------------------------------------


def test_vectors_are_well_formed(plain: Splade, tokenizer: Any) -> None:
    vectors = plain.encode_documents(SENTENCES)
    assert len(vectors) == len(SENTENCES)
    for vec in vectors:
        assert isinstance(vec, SparseVec)
        assert vec.indices, "a random MLM activates some vocabulary entries"
        assert len(vec.indices) == len(vec.values) == len(vec.tokens)
        assert all(isinstance(i, int) and 0 <= i < len(VOCAB) for i in vec.indices)
        assert vec.indices == sorted(set(vec.indices))  # unique and ascending
        assert all(isinstance(v, float) and v > 0 for v in vec.values)
        assert vec.tokens == tokenizer.convert_ids_to_tokens(vec.indices)


def test_vectors_match_the_models_dense_output(plain: Splade) -> None:
    # The conversion from SparseEncoder's sparse tensor loses nothing and invents nothing.
    dense = plain.model.encode_document(
        SENTENCES, convert_to_sparse_tensor=False, show_progress_bar=False
    )
    for vec, row in zip(plain.encode_documents(SENTENCES), dense, strict=True):
        expected = {i: float(v) for i, v in enumerate(row.tolist()) if v > 0}
        assert vec.indices == sorted(expected)
        assert vec.values == pytest.approx([expected[i] for i in vec.indices], abs=1e-6)


def test_dot_product_equals_the_models_similarity(plain: Splade) -> None:
    # Deterministic stand-in for a ranking check (random weights carry no lexical signal): scores
    # computed from SparseVecs, as Qdrant computes them, equal SparseEncoder's own dot product.
    query = "the cat sleeps in the park"
    q = plain.encode_query(query)
    docs = plain.encode_documents(SENTENCES)
    # Dense tensors: multiplying SparseEncoder's sparse outputs makes torch warn that sparse CSR
    # support is in beta (a UserWarning), and the scores are the same.
    dense = {"convert_to_sparse_tensor": False, "show_progress_bar": False}
    expected = plain.model.similarity(
        plain.model.encode_query([query], **dense), plain.model.encode_document(SENTENCES, **dense)
    )[0].tolist()
    assert plain.model.similarity_fn_name == "dot"
    assert [_dot(q, d) for d in docs] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_batch_equals_one_by_one(plain: Splade) -> None:
    # batch_size=4 over texts of different lengths: padding must not leak into the vectors, and
    # sentence-transformers' length sorting must not reorder the results.
    texts = [*SENTENCES, "cat", "the river", SENTENCES[0] + " " + SENTENCES[5]]
    batched = plain.encode_documents(texts)
    assert len(batched) == len(texts)
    for text, vec in zip(texts, batched, strict=True):
        _assert_close(vec, plain.encode_documents([text])[0])


def test_empty_input(plain: Splade) -> None:
    assert plain.encode_documents([]) == []


def test_query_and_document_sides_of_a_plain_mlm_are_equal(plain: Splade) -> None:
    # A bare MLM has empty prompts and no router: both sides run the same computation.
    assert plain.model.prompts == {"query": "", "document": ""}
    for text in SENTENCES[:3]:
        _assert_close(plain.encode_query(text), plain.encode_documents([text])[0], tol=1e-6)


def test_query_and_document_use_their_own_methods(tiny_splade: Path, plain: Splade) -> None:
    # The saved checkpoint carries different prompts per side, so each side is recognisable.
    encoder = Splade(str(tiny_splade))
    text = SENTENCES[2]
    query = encoder.encode_query(text)
    document = encoder.encode_documents([text])[0]
    _assert_close(query, plain.encode_query(QUERY_PROMPT + text))
    _assert_close(document, plain.encode_documents([DOCUMENT_PROMPT + text])[0])
    assert _as_dict(query) != pytest.approx(_as_dict(document), abs=1e-4)


# -- term ids ---------------------------------------------------------------------------------


def test_term_ids_of_a_vocabulary_word(plain: Splade, tokenizer: Any) -> None:
    park = tokenizer.convert_tokens_to_ids("park")
    assert park == VOCAB.index("park")
    assert plain.term_ids("park") == [(park, "park")]
    assert plain.term_ids("Park") == [(park, "park")]  # the tokenizer lowercases


def test_term_ids_split_into_word_pieces(plain: Splade) -> None:
    assert plain.term_ids("parks") == [(VOCAB.index("park"), "park"), (VOCAB.index("##s"), "##s")]


def test_term_ids_are_unique_in_first_occurrence_order(plain: Splade) -> None:
    assert plain.term_ids("river the river") == [
        (VOCAB.index("river"), "river"),
        (VOCAB.index("the"), "the"),
    ]


def test_term_ids_drop_unknown_and_special_tokens(plain: Splade, tokenizer: Any) -> None:
    # The tokenizer turns an unknown word into [UNK]; term_ids leaves it out.
    assert tokenizer("zyzzyva", add_special_tokens=False)["input_ids"] == [tokenizer.unk_token_id]
    assert plain.term_ids("zyzzyva") == []
    assert plain.term_ids("zyzzyva cat") == [(VOCAB.index("cat"), "cat")]
    assert plain.term_ids("[CLS] cat [SEP]") == [(VOCAB.index("cat"), "cat")]
    assert plain.term_ids("") == []


def test_term_ids_land_in_the_vector_index_space(plain: Splade) -> None:
    # The metadata fallback relies on term ids naming the same dimensions as the vectors.
    pairs = plain.term_ids("fox river bank")
    assert [t for _, t in pairs] == ["fox", "river", "bank"]
    vec = plain.encode_documents(["fox river bank"])[0]
    token_of = dict(zip(vec.indices, vec.tokens, strict=True))
    shared = [(i, t) for i, t in pairs if i in token_of]
    assert shared, "a random MLM activates most of its tiny vocabulary"
    assert all(token_of[i] == t for i, t in shared)


# -- signature, truncation, device ------------------------------------------------------------


def test_signature(tiny_mlm: Path, plain: Splade) -> None:
    assert plain.signature == f"splade|{tiny_mlm}|max_len=128"  # max_position_embeddings
    short = Splade(str(tiny_mlm), max_length=16)
    longer = Splade(str(tiny_mlm), max_length=32)
    assert short.signature == f"splade|{tiny_mlm}|max_len=16"
    assert short.signature != longer.signature != plain.signature


def test_max_length_truncates(tiny_mlm: Path, plain: Splade, tokenizer: Any) -> None:
    # The signature changes with max_length because the vectors do: 8 tokens = [CLS] + 6 + [SEP].
    text = SENTENCES[0]
    words = tokenizer.tokenize(text)
    assert len(words) > 6
    truncated = Splade(str(tiny_mlm), max_length=8)
    assert truncated.model.max_seq_length == 8
    head = tokenizer.convert_tokens_to_string(words[:6])
    _assert_close(truncated.encode_documents([text])[0], plain.encode_documents([head])[0])
    assert _as_dict(truncated.encode_documents([text])[0]) != pytest.approx(
        _as_dict(plain.encode_documents([text])[0]), abs=1e-4
    )


def test_to_moves_the_model(tiny_mlm: Path) -> None:
    encoder = Splade(str(tiny_mlm), device=None)
    encoder.to("cpu")  # before loading: remembered
    assert encoder.device == "cpu"
    assert encoder.model.device.type == "cpu"
    encoder.to("cpu")  # after loading: moved
    assert encoder.encode_query("cat").indices

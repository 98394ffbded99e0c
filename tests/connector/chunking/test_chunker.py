"""TokenChunker: chunks within the token budget, exact offsets, structure first, documents."""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from connector.chunking import Chunk, TokenChunker, _cuts
from connector.chunking._cuts import offsets_count_exactly
from connector.chunking._models import load_tokenizer
from connector.dense import DEFAULT_DENSE_MODEL


@dataclass(frozen=True)
class Block:
    """Stands in for ``connector.documents.Block``."""

    start: int
    end: int
    page: int | None = None
    headings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Document:
    """Stands in for ``connector.documents.Document``."""

    text: str
    blocks: tuple[Block, ...] = ()
    title: str | None = None


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return load_tokenizer(DEFAULT_DENSE_MODEL)


@pytest.fixture(scope="module")
def small(tokenizer: Tokenizer) -> TokenChunker:
    return TokenChunker(tokenizer, max_tokens=32, overlap_tokens=8)


def sentences(count: int, seed: str = "wing") -> str:
    return " ".join(
        f"The {seed} number {n} lifts the aircraft at speed {n * 7}." for n in range(count)
    )


def assert_sound(chunker: TokenChunker, source: str, chunks: list[Chunk]) -> None:
    """Within budget by a fresh count, exact offsets, in order, overlaps of whole words within
    ``overlap_tokens``, and no text lost (between two chunks that share none: whitespace only)."""
    covered = [False] * len(source)
    for position, chunk in enumerate(chunks):
        assert chunk.index == position
        assert chunk.text == source[chunk.start : chunk.end]
        assert chunk.text and chunk.text == chunk.text.strip()
        assert chunk.tokens == chunker.count_tokens(chunk.text) <= chunker.max_tokens
        covered[chunk.start : chunk.end] = [True] * (chunk.end - chunk.start)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.start < after.start and before.end < after.end
        if after.start < before.end:  # shared: whole words from the end of the one before
            assert source[after.start - 1].isspace()
            shared = chunker.count_tokens(source[after.start : before.end])
            assert shared <= chunker.overlap_tokens
        else:
            assert not source[before.end : after.start].strip()
    lost = [ch for ch, seen in zip(source, covered, strict=True) if not seen and not ch.isspace()]
    assert not lost


# --------------------------------------------------------------------------- construction


def test_bad_sizes_are_refused(tokenizer: Tokenizer) -> None:
    with pytest.raises(ValueError, match="max_tokens = 7: must be at least 8"):
        TokenChunker(tokenizer, 7)
    with pytest.raises(ValueError, match=r"overlap_tokens = 32: .*smaller than max_tokens \(32\)"):
        TokenChunker(tokenizer, 32, 32)
    with pytest.raises(ValueError, match="overlap_tokens = -1"):
        TokenChunker(tokenizer, 32, -1)


def test_the_callers_tokenizer_is_left_as_it_was(tokenizer: Tokenizer) -> None:
    # The model's tokenizer.json truncates and pads to 128: counts through it would be wrong.
    assert tokenizer.truncation is not None and tokenizer.padding is not None
    chunker = TokenChunker(tokenizer, 64)
    assert tokenizer.truncation is not None and tokenizer.padding is not None
    assert chunker.count_tokens("hello world") == 2  # no [CLS]/[SEP], no padding
    assert chunker.count_tokens(sentences(40)) > 128  # no truncation


def test_pickles_and_cuts_the_same(small: TokenChunker) -> None:
    text = sentences(30)
    again = pickle.loads(pickle.dumps(small))
    assert (again.max_tokens, again.overlap_tokens) == (32, 8)
    assert again.chunk_text(text) == small.chunk_text(text)


# --------------------------------------------------------------------------- plain text


def test_empty_and_blank_texts_have_no_chunks(small: TokenChunker) -> None:
    assert small.chunk_text("") == []
    assert small.chunk_text(" \n\n\t ") == []
    # U+001F is whitespace to Python (strip() drops it) and nothing to the tokenizer.
    assert small.chunk_text("\x1f \x1f") == []
    assert [(c.text, c.start) for c in small.chunk_text("\x1fdrag\x1f")] == [("drag", 1)]


def test_a_short_text_is_one_stripped_chunk(small: TokenChunker) -> None:
    (chunk,) = small.chunk_text("\n  Lift and drag.  \n")
    assert chunk == Chunk("Lift and drag.", 3, 17, 0, None, (), 4)


def test_offsets_count_characters_not_bytes(small: TokenChunker) -> None:
    text = (
        "Ünïcödé résumé naïve Ærø. " * 12
        + "\n\n"
        + "日本語のテキストです。" * 8
        + "\n\n🎉 fin 🎉 ende."
    )
    chunks = small.chunk_text(text)
    assert len(chunks) > 3
    assert_sound(small, text, chunks)
    assert chunks[-1].end == len(text)  # a byte offset would point past the end


def test_a_paragraph_break_is_preferred_over_a_mid_sentence_cut(tokenizer: Tokenizer) -> None:
    chunker = TokenChunker(tokenizer, 64)
    first, second = sentences(3, "wing"), sentences(3, "flap")
    assert 32 < chunker.count_tokens(first) <= 64  # the two paragraphs do not fit in one chunk
    text = f"{first}\n\n{second}"
    assert [c.text for c in chunker.chunk_text(text)] == [first, second]


def test_sentences_before_words(tokenizer: Tokenizer) -> None:
    chunker = TokenChunker(tokenizer, 40)
    chunks = chunker.chunk_text(sentences(12))
    assert len(chunks) > 2
    assert all(chunk.text.endswith(".") for chunk in chunks)


def test_overlap_repeats_the_end_of_the_previous_chunk(tokenizer: Tokenizer) -> None:
    text = " ".join(f"w{n}" for n in range(400))
    plain = TokenChunker(tokenizer, 32).chunk_text(text)
    overlapping = TokenChunker(tokenizer, 32, overlap_tokens=10).chunk_text(text)
    assert all(b.start >= a.end for a, b in zip(plain, plain[1:], strict=False))
    pairs = list(zip(overlapping, overlapping[1:], strict=False))
    assert all(b.start < a.end for a, b in pairs)
    for a, b in pairs:
        shared = TokenChunker(tokenizer, 32).count_tokens(text[b.start : a.end])
        assert 0 < shared <= 10
    assert len(overlapping) > len(plain)


def test_a_long_text_becomes_chunks_within_the_window(tokenizer: Tokenizer) -> None:
    chunker = TokenChunker(tokenizer, 254, overlap_tokens=32)
    words = sentences(1500)  # 15,000 words
    assert len(words.split()) == 15_000
    chunks = chunker.chunk_text(words)
    assert_sound(chunker, words, chunks)
    assert max(c.tokens for c in chunks) <= 254
    assert min(c.tokens for c in chunks[:-1]) > 127  # filled, not crumbs


def test_a_text_without_spaces_is_cut(small: TokenChunker) -> None:
    for text in ("lift,drag;" * 300, "日本語のテキスト" * 200):
        chunks = small.chunk_text(text)
        assert len(chunks) > 10
        assert_sound(small, text, chunks)


def test_a_word_over_100_characters_is_one_unknown_token(small: TokenChunker) -> None:
    # WordPiece reads such a word as one [UNK]: the model sees it whole, as one token.
    text = "x" * 2000 + " tail"
    assert [c.tokens for c in small.chunk_text(text)] == [2]


_ALPHABET = st.sampled_from(
    list("abcxyz ABC.,;!?'-\n\t")
    + ["é", "ß", "Ω", "ж", "日", "本", "🎉", "\u0301", "\u00a0", "\x1f", "\u2028", "。"]
)
_TEXTS = st.lists(
    st.one_of(
        st.text(_ALPHABET, max_size=40),
        # No spaces: long words, CJK runs, punctuation between words.
        st.text(st.sampled_from(list("abcdefghé日,")), min_size=50, max_size=400),
        st.sampled_from(["\n\n", "\n\n\n\n", " \n \n ", "\r\n\r\n", "\n"]),
        st.text(max_size=30),
    ),
    max_size=20,
).map("".join)


@settings(max_examples=80, deadline=None)
@given(text=_TEXTS, max_tokens=st.integers(8, 64), overlap=st.integers(0, 7))
def test_chunks_never_exceed_the_budget(
    tokenizer: Tokenizer, text: str, max_tokens: int, overlap: int
) -> None:
    chunker = TokenChunker(tokenizer, max_tokens, overlap)
    chunks = chunker.chunk_text(text)
    assert_sound(chunker, text, chunks)
    if text.strip() and chunker.count_tokens(text) <= max_tokens:
        assert [c.text for c in chunks] == [text.strip()]  # a text that fits is one chunk
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_cuts, "_PIECE", 20)  # long sections are encoded in pieces: the same cuts
        assert chunker.chunk_text(text) == chunks


_WORDS = st.text(st.sampled_from(list("abcdefgh日é")), min_size=1, max_size=12)
_SENTENCES = st.lists(_WORDS, min_size=1, max_size=12).map(lambda words: " ".join(words) + ".")
_PARAGRAPHS = st.lists(_SENTENCES, min_size=1, max_size=5).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(
    paragraphs=st.lists(_PARAGRAPHS, min_size=1, max_size=12),
    breaks=st.sampled_from(["\n\n", "\n \n", "\n\n\n"]),
    overlap=st.integers(0, 12),
)
def test_paragraphs_that_fit_are_never_cut(
    tokenizer: Tokenizer, paragraphs: list[str], breaks: str, overlap: int
) -> None:
    chunker = TokenChunker(tokenizer, 48, overlap)
    kept = [p for p in paragraphs if chunker.count_tokens(p) <= 48]
    text = breaks.join(kept)
    chunks = chunker.chunk_text(text)
    assert_sound(chunker, text, chunks)
    ends = {len(text)} | {m.start() for m in re.finditer(re.escape(breaks), text)}
    assert all(c.end in ends for c in chunks)  # each chunk ends where a paragraph does
    if not overlap:
        assert all(c.start == 0 or text[c.start - 1] == breaks[-1] for c in chunks)


@settings(max_examples=40, deadline=None)
@given(sentences=st.lists(_SENTENCES, min_size=1, max_size=30), overlap=st.integers(0, 12))
def test_sentences_that_fit_are_never_cut(
    tokenizer: Tokenizer, sentences: list[str], overlap: int
) -> None:
    chunker = TokenChunker(tokenizer, 48, overlap)
    text = " ".join(s for s in sentences if chunker.count_tokens(s) <= 48)
    chunks = chunker.chunk_text(text)
    assert_sound(chunker, text, chunks)
    assert all(c.text.endswith(".") for c in chunks)


def test_counts_read_off_offsets_are_checked_where_words_join(small: TokenChunker) -> None:
    # U+001F is whitespace to Python but dropped by the tokenizer: "lift\x1fdrag" is one word,
    # whose pieces count otherwise alone.
    text = "lift\x1fdragcoefficient\x1fsupersonic " * 80
    assert_sound(small, text, small.chunk_text(text))


class CountingChunker(TokenChunker):
    """Counts the fresh counts the chunker asks for."""

    fresh = 0

    def count_tokens(self, text: str) -> int:
        self.fresh += 1
        return super().count_tokens(text)


def test_the_bundled_tokenizer_counts_by_offsets(tokenizer: Tokenizer) -> None:
    assert offsets_count_exactly(tokenizer)
    chunker = CountingChunker(tokenizer, 64, overlap_tokens=16)
    text = "\n\n".join(sentences(n + 3, f"wing{n}") for n in range(30))
    chunks = chunker.chunk_text(text)
    assert len(chunks) > 20 and chunker.fresh == 0  # one encoding, every count off its offsets
    assert_sound(chunker, text, chunks)


def _trained(kind: str) -> Tokenizer:
    """A small tokenizer whose words carry their spaces (byte-level BPE, SentencePiece-like
    Unigram): counts read off offsets are not exact, so every cut is counted afresh."""
    corpus = [sentences(40, seed) for seed in ("wing", "flap", "tail", "nose", "日本語", "über")]
    if kind == "bpe":
        trained = Tokenizer(models.BPE())
        trained.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trained.decoder = decoders.ByteLevel()
        trainer: trainers.Trainer = trainers.BpeTrainer(
            vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
    else:
        trained = Tokenizer(models.Unigram())
        trained.pre_tokenizer = pre_tokenizers.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=200, unk_token="<unk>", special_tokens=["<unk>"]
        )
    trained.train_from_iterator(corpus, trainer)
    return trained


@pytest.fixture(scope="module", params=["bpe", "unigram"])
def other(request: pytest.FixtureRequest) -> Tokenizer:
    return _trained(request.param)


@settings(max_examples=40, deadline=None)
@given(text=_TEXTS, max_tokens=st.integers(8, 40), overlap=st.integers(0, 7))
def test_other_tokenizers_are_counted_afresh(
    other: Tokenizer, text: str, max_tokens: int, overlap: int
) -> None:
    assert not offsets_count_exactly(other)
    chunker = TokenChunker(other, max_tokens, overlap)
    assert_sound(chunker, text, chunker.chunk_text(text))


def test_other_tokenizers_cut_on_structure_too(other: Tokenizer) -> None:
    chunker = TokenChunker(other, 64, overlap_tokens=8)
    text = sentences(60)
    chunks = chunker.chunk_text(text)
    assert len(chunks) > 3
    assert_sound(chunker, text, chunks)
    assert all(chunk.text.endswith(".") for chunk in chunks)


# --------------------------------------------------------------------------- documents


def test_documents_are_cut_within_pages_and_sections(tokenizer: Tokenizer) -> None:
    chunker = TokenChunker(tokenizer, 40, overlap_tokens=8)
    parts = [
        ("Intro", sentences(2, "intro"), 1, ()),
        ("Wings", sentences(9, "wing"), 1, ("Aircraft", "Wings")),
        ("", sentences(4, "page"), 2, ("Aircraft", "Wings")),
        ("Tail", sentences(1, "tail"), 2, ("Aircraft", "Tail")),
    ]
    text, blocks = "", []
    for heading, body, page, headings in parts:
        if heading:
            blocks.append(Block(len(text), len(text) + len(heading), page, headings))
            text += heading + "\n\n"
        blocks.append(Block(len(text), len(text) + len(body), page, headings))
        text += body + "\n\n"
    document = Document(text, tuple(blocks), "A plane")
    chunks = chunker.chunk_document(document)
    assert_sound(chunker, text, chunks)
    for chunk in chunks:
        (owner,) = {
            (b.page, b.headings) for b in blocks if b.start < chunk.end and chunk.start < b.end
        }
        assert (chunk.page, chunk.headings) == owner
    assert [(c.page, c.headings) for c in chunks][-1] == (2, ("Aircraft", "Tail"))
    assert chunks[-1].text == "Tail\n\n" + sentences(1, "tail")
    by_place = {(c.page, c.headings) for c in chunks}
    assert by_place == {
        (1, ()),
        (1, ("Aircraft", "Wings")),
        (2, ("Aircraft", "Wings")),
        (2, ("Aircraft", "Tail")),
    }


def test_text_outside_blocks_is_left_out_and_blockless_is_plain(small: TokenChunker) -> None:
    text = "NAVIGATION MENU\n\nThe body text.\n\nFOOTER"
    start = text.index("The")
    (chunk,) = small.chunk_document(Document(text, (Block(start, start + 14),)))
    assert (chunk.text, chunk.start) == ("The body text.", start)
    assert small.chunk_document(Document(text)) == small.chunk_text(text)


def test_a_block_outside_the_text_is_refused(small: TokenChunker) -> None:
    with pytest.raises(ValueError, match=re.escape("block [2:99] lies outside the text (4 chars)")):
        small.chunk_document(Document("abcd", (Block(2, 99),)))

"""BM25 sparse vectors that are bit-identical to Qdrant's ``Qdrant/bm25`` (fastembed).

Documents written by the connector with :class:`Bm25` can be searched with fastembed's
``Bm25("Qdrant/bm25").query_embed`` (and vice versa), so every step below reproduces
fastembed's pipeline exactly:

1. every character that is neither a word character (``\\w``) nor whitespace becomes a space,
2. the text is lowercased and split into runs of word characters,
3. a token is dropped when it is a single punctuation character (Unicode category ``P*``; the
   only such word character is ``_``), a stopword, or longer than ``token_max_length``,
4. the lowercased token is Snowball-stemmed; empty stems are dropped,
5. a stem's id is ``abs(mmh3.hash(stem))`` (signed 32-bit MurmurHash3, seed 0),
6. a document value is ``tf * (k + 1) / (tf + k * (1 - b + b * doc_len / avg_len))`` with the
   same float64 operation order as fastembed; a query value is ``1.0`` per distinct id.

The vectors are meant for a Qdrant sparse index with ``modifier="idf"``: Qdrant adds the IDF part.

Speed comes from caching the whole per-token pipeline (filters, stemming) per distinct token and
the hash per distinct stem, and from doing the per-document work in C where possible
(``str.translate``/``re.findall`` for tokenizing, the C counting helper of ``Counter``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from py_rust_stemmers import SnowballStemmer

from connector.errors import ConfigError
from connector.sparse._model import SparseModel, SparseModelDescription
from connector.sparse._stemhash import CACHE_LIMIT, IdCache, bm25_params, format_number
from connector.sparse.vector import SparseVec, stem_term_ids

try:
    # The C helper behind Counter.update: counting into a plain dict skips Counter's
    # Python-level constructor, which is a measurable share of the per-document cost.
    from collections import _count_elements  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - other interpreters

    def _count_elements(mapping: dict[Any, int], iterable: Iterable[Any]) -> None:
        get = mapping.get
        for element in iterable:
            mapping[element] = get(element, 0) + 1


if TYPE_CHECKING:
    from connector.settings import SparseSettings

__all__ = ["STOPWORDS_DIR", "Bm25", "Bm25Family", "SparseVec"]

STOPWORDS_DIR: Path = Path(__file__).resolve().parent / "data"
"""Folder holding the bundled stopword lists (``<language>.txt``, one word per line)."""

# fastembed first replaces ``[^\w\s]`` with spaces *before* lowercasing. This only matters for
# text containing a capital sigma: ``str.lower`` turns it into a final sigma depending on its
# neighbours, and punctuation such as an apostrophe is "case-ignorable" context there. For every
# other character, lowercasing a non-word character never yields a word character (checked over
# all code points by the tests), so the pre-pass can be skipped.
_CAPITAL_SIGMA = "\u03a3"
_NON_WORD_NON_SPACE = re.compile(r"[^\w\s]")
_WORD_RUN = re.compile(r"\w+")


def _build_ascii_table() -> dict[int, str]:
    """Maps ASCII to what fastembed's pre-pass + lower + non-word-to-space would produce."""
    table: dict[int, str] = {}
    for code in range(128):
        char = chr(code)
        table[code] = char.lower() if (char.isalnum() or char == "_") else " "
    return table


# For pure-ASCII text (the common case) one C-level translate + split replaces three regex passes.
_ASCII_TABLE = _build_ascii_table()


def _split_words(text: str) -> list[str]:
    """Splits text into lowercase word tokens exactly like fastembed's tokenizer.

    Args:
        text: Raw text.

    Returns:
        The lowercase runs of word characters, in order.
    """
    if text.isascii():
        return text.translate(_ASCII_TABLE).split()
    if _CAPITAL_SIGMA in text:
        text = _NON_WORD_NON_SPACE.sub(" ", text)
    return _WORD_RUN.findall(text.lower())


def _load_stopwords(language: str) -> frozenset[str]:
    """Loads the bundled stopwords for a language, or an empty set when none are bundled."""
    path = STOPWORDS_DIR / f"{language}.txt"
    if not path.is_file():
        return frozenset()
    # splitlines() like fastembed: blank lines would become "" which no token can equal.
    return frozenset(path.read_text(encoding="utf-8").splitlines())


class _StemCache(dict[str, str | None]):
    """token -> kept stem, or None when the token is dropped; filled lazily on a miss.

    Being a dict subclass with ``__missing__`` lets ``map(cache.__getitem__, tokens)`` run the
    hit path entirely in C and only call back into Python for unseen tokens.
    """

    __slots__ = ("_stopwords", "_max_len", "_stem_word")

    def __init__(self, stopwords: frozenset[str], max_len: int, stemmer: SnowballStemmer) -> None:
        super().__init__()
        self._stopwords = stopwords
        self._max_len = max_len
        self._stem_word = stemmer.stem_word

    def __missing__(self, token: str) -> str | None:
        stem = self._compute(token)
        if len(self) >= CACHE_LIMIT:
            self.clear()
        self[token] = stem
        return stem

    def _compute(self, token: str) -> str | None:
        # Same checks, same order and same operands as fastembed's Bm25._stem.
        lower = token.lower()
        if len(token) == 1 and unicodedata.category(token).startswith("P"):
            return None
        if lower in self._stopwords:
            return None
        if len(token) > self._max_len:
            return None
        return self._stem_word(lower) or None


def _rebuild(options: dict[str, Any]) -> Bm25:
    """Unpickling helper: rebuilds an encoder (with empty caches) from its options."""
    return Bm25(**options)


class Bm25Family(SparseModel):
    """What both BM25 flavours share: options from ``sparse.bm25``, ``avg_len = "auto"`` among
    them, and all of them recorded on the collection."""

    @classmethod
    def options(cls, sparse: SparseSettings, *, avg_len: float | None = None) -> dict[str, Any]:
        options = sparse.bm25.model_dump()
        if sparse.bm25.avg_len == "auto":
            if avg_len is None:
                raise ConfigError("sparse.bm25.avg_len: 'auto' was not resolved to a number")
            options["avg_len"] = avg_len
        return options

    @classmethod
    def recorded_options(cls, sparse: SparseSettings, options: Mapping[str, Any]) -> dict[str, Any]:
        # A measured avg_len is reused by later syncs only when it is marked as measured.
        return dict(options) | {"avg_len_auto": sparse.bm25.avg_len == "auto"}


class Bm25(Bm25Family):
    """BM25 sparse encoder producing the same vectors as fastembed's ``Qdrant/bm25``.

    Instances are cheap to share: the only state besides the options are the caches, whose
    updates are single dict operations (safe under the GIL; a race just recomputes a value).
    """

    description = SparseModelDescription(
        name="qdrant-bm25",
        flavour="fastembed",
        index_space="mmh3(snowball-stem)",
        idf=True,
        recommended_batch_size=256,
        base_model=None,
        weighting="bm25-tf",
        options_key="bm25",
        auto_avg_len=True,
    )

    def __init__(
        self,
        *,
        k: float = 1.2,
        b: float = 0.75,
        avg_len: float = 256.0,
        language: str = "english",
        token_max_length: int = 40,
    ) -> None:
        """Creates an encoder.

        Args:
            k: Term-frequency saturation, ``>= 0``.
            b: Document-length normalisation strength, ``0 <= b <= 1``.
            avg_len: Average document length in tokens, ``> 0``.
            language: A Snowball stemmer language. Only "english" has a bundled stopword list;
                other languages are stemmed but keep all stopwords.
            token_max_length: Tokens longer than this (in characters) are dropped, ``>= 0``.

        Raises:
            ValueError: If a parameter is out of range or the language is not supported.
        """
        k, b, avg_len = bm25_params(k, b, avg_len)
        if (
            isinstance(token_max_length, bool)
            or not isinstance(token_max_length, int)
            or token_max_length < 0
        ):
            raise ValueError(f"token_max_length must be an int >= 0, got {token_max_length!r}")
        if not isinstance(language, str):
            raise ValueError(f"language must be a string, got {language!r}")
        try:
            stemmer = SnowballStemmer(language)
        except ValueError as exc:
            raise ValueError(f"language {language!r} is not supported: {exc}") from exc

        self._k = k
        self._b = b
        self._avg_len = avg_len
        self._language = language
        self._token_max_length = token_max_length
        self._stopwords = _load_stopwords(language)
        self._stems = _StemCache(self._stopwords, token_max_length, stemmer)
        self._ids = IdCache()

    def __repr__(self) -> str:
        return f"Bm25({self.signature!r})"

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        # The Rust stemmer is not picklable; rebuild from the options (e.g. for process pools).
        return _rebuild, (self._options(),)

    def _options(self) -> dict[str, Any]:
        return {
            "k": self._k,
            "b": self._b,
            "avg_len": self._avg_len,
            "language": self._language,
            "token_max_length": self._token_max_length,
        }

    @property
    def signature(self) -> str:
        """Identifies the vector space; differs whenever an option that changes vectors differs.

        Returns:
            A string such as
            ``"qdrant-bm25|fastembed|english|k=1.2|b=0.75|avg_len=256|max_len=40"``.
        """
        return (
            f"qdrant-bm25|fastembed|{self._language}|k={format_number(self._k)}"
            f"|b={format_number(self._b)}|avg_len={format_number(self._avg_len)}"
            f"|max_len={self._token_max_length}"
        )

    def tokenize(self, text: str) -> list[str]:
        """Returns the kept stems of a text, in order, duplicates included.

        Args:
            text: Raw text.

        Returns:
            The stems that contribute to the vector (``len`` is BM25's document length).
        """
        return [stem for stem in map(self._stems.__getitem__, _split_words(text)) if stem]

    def term_id(self, stem: str) -> int:
        """Returns the sparse index of a stem.

        Args:
            stem: A stem as returned by :meth:`tokenize`.

        Returns:
            ``abs(mmh3.hash(stem))``: the signed 32-bit MurmurHash3 (seed 0), made non-negative.
        """
        return self._ids[stem]

    def term_ids(self, term: str) -> list[tuple[int, str]]:
        """The ids (and stems) a free-form term maps to in this index space.

        Args:
            term: A word or phrase, e.g. from ``metadata["sparse_features"]``.

        Returns:
            One ``(id, stem)`` per distinct kept stem; empty when every word is a stopword.
        """
        return stem_term_ids(self.tokenize, self.term_id, term)

    def encode_documents(self, texts: Iterable[str] | Sequence[str]) -> list[SparseVec]:
        """Encodes documents into BM25 term-frequency vectors.

        Args:
            texts: The documents.

        Returns:
            One vector per document, in input order; an empty vector when nothing is kept.
        """
        get_stem = self._stems.__getitem__
        get_id = self._ids.__getitem__
        k = self._k
        k_plus_1 = k + 1
        one_minus_b = 1 - self._b
        b = self._b
        avg_len = self._avg_len
        out: list[SparseVec] = []
        append = out.append
        for text in texts:
            tokens = _split_words(text)
            # Counting keeps first-occurrence order (as fastembed's defaultdict does); dropped
            # tokens are counted under None and subtracted from the document length.
            counts: dict[str | None, int] = {}
            _count_elements(counts, map(get_stem, tokens))
            doc_len = len(tokens) - counts.pop(None, 0)
            if not counts:
                append(SparseVec([], [], []))
                continue
            # Same operand order as fastembed so the float64 results are bit-identical:
            # n * (k + 1) / (n + k * (1 - b + b * doc_len / avg_len)).
            norm = k * (one_minus_b + b * doc_len / avg_len)
            kept = cast("dict[str, int]", counts)  # None was popped: every key is a stem
            stems = list(kept)
            ids = list(map(get_id, stems))
            values = [n * k_plus_1 / (n + norm) for n in kept.values()]
            if len(set(ids)) != len(ids):
                ids, values, stems = self._merge_collisions(ids, values, stems)
            append(SparseVec(ids, values, stems, doc_len))
        return out

    @staticmethod
    def _merge_collisions(
        ids: list[int], values: list[float], stems: list[str]
    ) -> tuple[list[int], list[float], list[str]]:
        """Resolves stems sharing a hash like fastembed's dict does: first position, last value."""
        merged: dict[int, tuple[float, str]] = {}
        for term_id, value, stem in zip(ids, values, stems, strict=True):
            merged[term_id] = (value, stem)
        return (
            list(merged),
            [value for value, _ in merged.values()],
            [stem for _, stem in merged.values()],
        )

    def encode_query(self, text: str) -> SparseVec:
        """Encodes a query: every distinct term id gets weight 1.0 (Qdrant applies the IDF).

        Args:
            text: The query text.

        Returns:
            A vector with unique indices in first-occurrence order and all values 1.0.
        """
        get_id = self._ids.__getitem__
        first_stem: dict[int, str] = {}
        # dict.fromkeys dedupes the stems in C; setdefault keeps the first stem of a hash clash.
        for stem in dict.fromkeys(map(self._stems.__getitem__, _split_words(text))):
            if stem:
                first_stem.setdefault(get_id(stem), stem)
        return SparseVec(list(first_stem), [1.0] * len(first_stem), list(first_stem.values()))

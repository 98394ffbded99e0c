"""The chunker: sections of a text cut by a Hugging Face tokenizer's counts, exact char offsets."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tokenizers import Encoding, Tokenizer

from connector.chunking._cuts import cut, offsets_count_exactly
from connector.chunking._models import ModelWindow, load_tokenizer, read_window
from connector.dense import DEFAULT_DENSE_MODEL

# Below this a chunk holds a few words at most: a setting that small is a mistake.
_MIN_TOKENS = 8


class SettingError(ValueError):
    """A value the chunker cannot use; ``key`` names the parameter (``None``: a model's files)."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


class _Block(Protocol):
    """What the chunker reads of a ``connector.documents.Block``."""

    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def page(self) -> int | None: ...
    @property
    def headings(self) -> tuple[str, ...]: ...


class _Document(Protocol):
    """What the chunker reads of a ``connector.documents.Document``."""

    @property
    def text(self) -> str: ...
    @property
    def blocks(self) -> Sequence[_Block]: ...


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of a text or document.

    ``text == source[start:end]`` exactly, where ``source`` is the text (or ``Document.text``)
    that was chunked: chunks never begin or end with whitespace, and offsets count Python
    characters (code points), not bytes.
    """

    text: str
    start: int
    """Offset of the chunk's first character in the chunked text."""
    end: int
    """Offset just past its last character."""
    index: int
    """0-based position of the chunk in its text or document."""
    page: int | None = None
    """The page its blocks are on (PDF), else ``None``."""
    headings: tuple[str, ...] = ()
    """The heading path of its section, outermost first."""
    tokens: int = 0
    """Tokens of ``text`` in the chunker's tokenizer, special tokens excluded."""


class TokenChunker:
    """Cuts texts into chunks of at most ``max_tokens`` tokens, on structure first.

    Each chunk runs to the farthest cut of the highest level within the budget: paragraph breaks
    (blank lines), then line breaks, sentence ends (``.``, ``!`` or ``?``, then any closing
    quotes or brackets, before whitespace; CJK full stops), spaces, the tokenizer's word
    boundaries (punctuation), and as a last resort token or character boundaries inside a word.
    Consecutive chunks share up to ``overlap_tokens`` tokens of whole words (none when no word
    fits in the overlap). Each section is tokenized once; counts are read off its offsets where
    they are exact and counted afresh elsewhere. Safe to pickle (processes receive it whole).

    Args:
        tokenizer: Counts the tokens; it is copied, so its own truncation and padding (which
            would cap or inflate counts) stay as they were.
        max_tokens: Most tokens per chunk, special tokens excluded.
        overlap_tokens: Most tokens shared by consecutive chunks.

    Raises:
        ValueError: ``max_tokens`` is below 8, or ``overlap_tokens`` is negative or not below
            ``max_tokens``.
    """

    def __init__(self, tokenizer: Tokenizer, max_tokens: int, overlap_tokens: int = 0) -> None:
        if max_tokens < _MIN_TOKENS:
            raise SettingError("max_tokens", f"max_tokens = {max_tokens}: must be at least 8")
        if not 0 <= overlap_tokens < max_tokens:
            raise SettingError(
                "overlap_tokens",
                f"overlap_tokens = {overlap_tokens}: must be at least 0 and smaller than "
                f"max_tokens ({max_tokens})",
            )
        self._tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.windows: dict[str, int] = {}
        """Usable tokens of each dense model by vector name (filled by :meth:`for_models`)."""
        self._exact = offsets_count_exactly(self._tokenizer)

    @classmethod
    def for_models(
        cls,
        models: Mapping[str, str],
        *,
        max_tokens: int | None = None,
        overlap_tokens: int = 0,
        tokenizer: str | None = None,
    ) -> TokenChunker:
        """A chunker sized to the smallest window of ``models``, read from their files only.

        A model's window is its ``max_seq_length`` (``sentence_bert_config.json``) less the
        special tokens its tokenizer adds ([CLS] and [SEP]: 2); neither torch nor the weights
        are loaded.

        Args:
            models: Vector name to model (folder or hub id) of each sentence-transformers model
                of the ensemble; plug-ins have no window and are left out. May be empty.
            max_tokens: Most tokens per chunk. ``None``: the smallest window (with no model:
                the bundled all-MiniLM-L6-v2's). More than the smallest window is an error.
            overlap_tokens: Most tokens shared by consecutive chunks.
            tokenizer: Model (folder or hub id) whose tokenizer counts. ``None``: the
                smallest-window model's (with no window known: the first model's; with no
                model: the bundled all-MiniLM-L6-v2's).

        Raises:
            ValueError: A value is out of range or a model's files cannot be read; the
                message names the parameter or the model.
        """
        windows: dict[str, ModelWindow] = {}
        tokenizers: dict[str, Tokenizer] = {}
        for name, reference in models.items():
            try:
                tokenizers[name] = load_tokenizer(reference)
            except ValueError as exc:
                raise SettingError(None, f"dense model {name!r}: {exc}") from None
            window = read_window(reference, tokenizers[name])
            if window is not None:
                windows[name] = window
        smallest = min(windows, key=lambda name: windows[name].tokens, default=None)
        if tokenizer is not None:
            try:
                counter = load_tokenizer(tokenizer)
            except ValueError as exc:
                raise SettingError("tokenizer", f"tokenizer: {exc}") from None
        else:
            # The smallest-window model's; else (no window known) the first model's.
            first = smallest if smallest is not None else next(iter(tokenizers), None)
            counter = (
                tokenizers[first] if first is not None else load_tokenizer(DEFAULT_DENSE_MODEL)
            )
        if smallest is None:
            size = max_tokens if max_tokens is not None else _bundled_window()
        else:
            limit = windows[smallest]
            size = limit.tokens if max_tokens is None else max_tokens
            if size > limit.tokens:
                raise SettingError(
                    "max_tokens",
                    f"max_tokens = {size} exceeds the window of dense model {smallest!r} "
                    f"({limit.reference}): {limit.tokens} tokens (max_seq_length "
                    f"{limit.max_seq_length} less its special tokens)",
                )
        chunker = cls(counter, size, overlap_tokens)
        chunker.windows = {name: window.tokens for name, window in windows.items()}
        return chunker

    def __getstate__(self) -> dict[str, Any]:
        # A Tokenizer does not pickle; it is rebuilt from its JSON.
        return {
            "tokenizer": self._tokenizer.to_str(),
            "max_tokens": self.max_tokens,
            "overlap_tokens": self.overlap_tokens,
            "windows": self.windows,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        rebuilt = TokenChunker(
            Tokenizer.from_str(state["tokenizer"]), state["max_tokens"], state["overlap_tokens"]
        )
        rebuilt.windows = state["windows"]
        self.__dict__.update(rebuilt.__dict__)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text``, special tokens excluded."""
        return len(self._encode(text))

    def _encode(self, text: str) -> Encoding:
        return self._tokenizer.encode(text, add_special_tokens=False)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each of ``texts``, as :meth:`count_tokens` counts them, in one call: about
        twice as fast, and off the GIL (the tokenizer's own threads)."""
        encoded = self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        return [len(encoding) for encoding in encoded]

    def chunk_text(self, text: str) -> list[Chunk]:
        """The chunks of a plain text (none for an empty or blank one)."""
        return self._chunks([(0, len(text), None, ())], text)

    def chunk_document(self, document: _Document) -> list[Chunk]:
        """The chunks of a document read into blocks.

        Consecutive blocks on the same page under the same headings form a section; chunks are
        cut within one section, never across two, and carry its page and headings. Text
        outside every block is not chunked; a document without blocks is chunked as plain text.

        Raises:
            ValueError: A block's offsets lie outside the document's text.
        """
        text, blocks = document.text, document.blocks
        if not blocks:
            return self.chunk_text(text)
        for block in blocks:
            if not 0 <= block.start <= block.end <= len(text):
                raise ValueError(
                    f"block [{block.start}:{block.end}] lies outside the text ({len(text)} chars)"
                )
        sections = []
        for (page, headings), run in itertools.groupby(
            blocks, key=lambda block: (block.page, tuple(block.headings))
        ):
            members = list(run)
            end = max(block.end for block in members)
            sections.append((members[0].start, end, page, headings))
        return self._chunks(sections, text)

    def _chunks(
        self, sections: list[tuple[int, int, int | None, tuple[str, ...]]], text: str
    ) -> list[Chunk]:
        chunks: list[Chunk] = []
        for start, end, page, headings in sections:
            whole = text[start:end]
            # Python's strip() also drops the separators U+001C-U+001F, which the tokenizer drops
            # too: trimmed so, ``text == text.strip()`` holds and separators alone are no chunk.
            kept = whole.strip()
            if not kept:
                continue
            at = start + len(whole) - len(whole.lstrip())
            # One encoding a section: the cuts are read off its offsets.
            spans = cut(
                kept,
                self._encode,
                self.max_tokens,
                self.overlap_tokens,
                self.count_tokens,
                self._exact,
            )
            chunks.extend(
                Chunk(kept[a:b], at + a, at + b, index, page, headings, tokens)
                for index, (a, b, tokens) in enumerate(spans, start=len(chunks))
            )
        return chunks


def _bundled_window() -> int:
    """Usable tokens of the bundled all-MiniLM-L6-v2 (254), the size when no model has one."""
    window = read_window(DEFAULT_DENSE_MODEL, load_tokenizer(DEFAULT_DENSE_MODEL))
    if window is None:
        raise SettingError("max_tokens", "max_tokens: no dense model states its window; set it")
    return window.tokens

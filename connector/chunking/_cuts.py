"""Where a section is cut: one encoding of the section, then cuts chosen by offsets.

The section is tokenized once, with offsets. A chunk that starts at character ``start`` (its first
token ``first``) may end at any character up to the start of token ``first + budget`` and then
holds at most ``budget`` tokens: those that start before its end. Of those ends the farthest one
of the highest level is taken: a blank line, a line break, a sentence end, a space, a boundary
between two of the tokenizer's words (``lift|,|drag``), between two tokens, and as a last resort
between two characters. The next chunk starts at the earliest space after which the end of this
one holds at most ``overlap_tokens`` tokens (whole words), else where this one stopped; a shorter
overlap when the full one would make the next chunk end at a lower level (a paragraph that fits
alone stays whole).

A count read off the offsets is exact when the tokenizer normalizes each character alone and
splits words at whitespace and punctuation before tokenizing each alone (BERT's WordPiece and the
like) and both ends of the span fall between two of its words: then the span alone splits into the
same words as in the whole section. Any other span is counted afresh, and a cut whose fresh count
is over the budget is taken again with a budget smaller by the excess.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from itertools import accumulate
from typing import cast

from tokenizers import Encoding, Tokenizer

# A line break (any str.splitlines() splits at) and the whitespace after it. The pattern begins
# with the break, not with the whitespace before it: re then skips to each break at C speed.
_LINE_BREAK = re.compile(r"[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]\s*")
# A sentence end: ".", "!" or "?" (and closing quotes or brackets) before whitespace; or a CJK
# full stop, which no space follows, before text.
_SENTENCE_END = re.compile(r"[.!?][\"'\u2019\u201d)\]}\u00bb]*(\s+)|[\u3002\uff01\uff1f](?=\S)")
# Long sections are encoded in pieces of about this many characters: tokenizers encodes one long
# text slower by the character (measured on 400-560 KB of Cranfield: 20% to 70% slower at once).
_PIECE = 16_000
_ASCII_SPACE = re.compile(r"[ \t\n\r]+")
# Whitespace as str.strip() reads it (re's \s is str.isspace()): chunks are stripped the same way.
_SPACE = re.compile(r"\s+")

# Tokenizer parts under which a span cut between two words counts as in the whole text: each
# character is normalized alone, words are split at whitespace or punctuation whatever surrounds
# them, and each word is tokenized alone (no dropout: BPE dropout draws anew at each call).
_LOCAL_NORMALIZERS = {"BertNormalizer", "Lowercase", "NFD", "NFKD", "StripAccents"}
_WORD_SPLITTERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}
_WORD_MODELS = {"WordPiece", "WordLevel", "BPE", "Unigram"}

# Where chunks of one level may end, in order, and where the chunk after each would then start.
_Ends = tuple[list[int], list[int]]


def offsets_count_exactly(tokenizer: Tokenizer) -> bool:
    """Whether a span between two of ``tokenizer``'s words counts as many tokens alone as within
    the text it was cut from (so counts read off one encoding's offsets are exact)."""
    spec = json.loads(tokenizer.to_str())

    def made_of(part: dict[str, object] | None, kinds: set[str], key: str) -> bool:
        if part is None:
            return key == "normalizers"  # no normalizer: every character is left as it is
        if part.get("type") == "Sequence":
            members = part.get(key)
            return isinstance(members, list) and all(made_of(m, kinds, key) for m in members)
        return part.get("type") in kinds

    model = spec.get("model") or {}
    added = spec.get("added_tokens") or []
    return (
        made_of(spec.get("normalizer"), _LOCAL_NORMALIZERS, "normalizers")
        and spec.get("pre_tokenizer") is not None
        and made_of(spec.get("pre_tokenizer"), _WORD_SPLITTERS, "pretokenizers")
        and model.get("type") in _WORD_MODELS
        and model.get("dropout") is None
        # An added token that swallows neighbouring spaces or needs a word of its own is matched
        # by what surrounds it.
        and not any(t.get("lstrip") or t.get("rstrip") or t.get("single_word") for t in added)
    )


def cut(
    text: str,
    encode: Callable[[str], Encoding],
    max_tokens: int,
    overlap_tokens: int,
    count: Callable[[str], int],
    exact: bool,
) -> list[tuple[int, int, int]]:
    """The chunks of one stripped, non-empty section, as ``(start, end, tokens)`` spans.

    ``text[start:end]`` is stripped and non-empty, and holds ``tokens`` tokens.

    Args:
        text: The section, stripped.
        encode: Encodes a text without special tokens (offsets into that text).
        max_tokens: Most tokens per chunk.
        overlap_tokens: Most tokens shared by consecutive chunks.
        count: Counts a text's tokens afresh.
        exact: Whether counts read off the offsets between two words are exact
            (:func:`offsets_count_exactly`).
    """
    if len(text) <= _PIECE:
        encoding = encode(text)
        if len(encoding) <= max_tokens:
            return [(0, len(text), len(encoding))]  # counted whole: exact
        pieces = [(0, encoding)]
    else:
        pieces = [(start, encode(text[start:end])) for start, end in _pieces(text)]
    return _Section(text, pieces, max_tokens, overlap_tokens, count, exact).spans()


def _pieces(text: str) -> list[tuple[int, int]]:
    """``text`` in pieces of about ``_PIECE`` characters, cut at ASCII whitespace (between two
    words for any tokenizer: the counts of the pieces add up)."""
    pieces, start = [], 0
    while len(text) - start > _PIECE:
        space = _ASCII_SPACE.search(text, start + _PIECE)
        if space is None:
            break
        pieces.append((start, space.start()))
        start = space.start()
    pieces.append((start, len(text)))
    return pieces


class _Section:
    """A section too long for one chunk, with its tokens' offsets and its boundaries."""

    def __init__(
        self,
        text: str,
        pieces: list[tuple[int, Encoding]],
        max_tokens: int,
        overlap_tokens: int,
        count: Callable[[str], int],
        exact: bool,
    ) -> None:
        self.text = text
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.count = count
        self.exact = exact
        starts: list[int] = []
        self.ends: list[int] = []
        self.words: list[int | None] = []
        base = 0  # the words of two pieces are kept apart
        for at, encoding in pieces:
            offsets, words = encoding.offsets, encoding.word_ids
            starts += [start + at for start, _ in offsets]
            self.ends += [end + at for _, end in offsets]
            self.words += (
                [None if word is None else word + base for word in words] if base else words
            )
            # Special tokens have no word (None): rare, so the common case stays a C-speed max().
            known = (
                cast(list[int], words) if None not in words else [w for w in words if w is not None]
            )
            base += 1 + max(known, default=-1)
        self.n = len(starts)
        # Bisection needs them in order; a tokenizer whose offsets step back is counted afresh.
        self.starts = starts if exact else list(accumulate(starts, max))
        self.levels = self._boundaries()

    def spans(self) -> list[tuple[int, int, int]]:
        """``(start, end, tokens)`` of each chunk."""
        spans = []
        start = done = 0
        while True:
            start, end, after, tokens = self._chunk(start, done)
            spans.append((start, end, tokens))
            if end == len(self.text):
                return spans
            start, done = self._next_start(start, end, after), end

    def _boundaries(self) -> tuple[_Ends, _Ends, _Ends]:
        """Paragraph, line and sentence ends (where a chunk may end, where the next may start)."""
        paragraphs: _Ends = ([], [])
        lines: _Ends = ([], [])
        sentences: _Ends = ([], [])
        text = self.text
        for match in _LINE_BREAK.finditer(text):
            end, after = match.span()
            while text[end - 1].isspace():  # the run of whitespace starts before the break
                end -= 1
            lines[0].append(end)
            lines[1].append(after)
            # Two line breaks or more: a blank line.
            if len((text[end:after] + ".").splitlines()) > 2:
                paragraphs[0].append(end)
                paragraphs[1].append(after)
        for match in _SENTENCE_END.finditer(text):
            # After ". " the space goes; after a CJK full stop the next chunk starts right there.
            sentences[0].append(match.start(1) if match.group(1) is not None else match.end())
            sentences[1].append(match.end())
        return paragraphs, lines, sentences

    def _chunk(self, start: int, done: int) -> tuple[int, int, int, int]:
        """The chunk from ``start`` (or, if it cannot fit, from where none is shared) that ends
        past ``done``: ``(start, end, after, tokens)``, where ``after`` is where the next chunk
        starts when none is shared."""
        past = max(start, done)
        first = bisect_left(self.starts, start)
        budget = self.max_tokens
        while budget > 0:
            cut = self._farthest(past, first + budget)
            if cut is None:
                break
            end, after, _ = cut
            tokens = self._tokens(start, end)
            if tokens <= self.max_tokens:
                return start, end, after, tokens
            budget -= tokens - self.max_tokens
        end, tokens = self._by_characters(start, past, first)
        alone = _skip_space(self.text, done)
        if tokens > self.max_tokens and start < alone:
            return self._chunk(alone, done)  # the overlap left no room: none is shared
        return start, end, end, tokens

    def _farthest(self, past: int, last: int) -> tuple[int, int, int] | None:
        """The best cut after ``past`` that leaves token ``last`` and those after it out:
        ``(end, after, level)``, level 0 the highest (the end of the section, then a blank
        line); ``None``: no token boundary is that near."""
        text, starts = self.text, self.starts
        if last >= self.n:
            return len(text), len(text), 0  # the rest fits
        limit = starts[last]
        for level, (ends, afters) in enumerate(self.levels, start=1):
            at = bisect_right(ends, limit) - 1
            if at >= 0 and ends[at] > past:
                return ends[at], afters[at], level
        # A space: scanned back from the limit (words are short; no list of every space is made).
        at = limit
        while at > past:
            if text[at].isspace() and not text[at - 1].isspace():
                return at, _skip_space(text, at), 4
            at -= 1
        # Between two of the tokenizer's words, else two tokens; never just after a space (that
        # space ends the previous chunk: a cut there would end this one where that one did).
        words = self.words
        for level, within_words in ((5, False), (6, True)):
            at = last
            while at > 0 and starts[at] > past:
                if (
                    (within_words or words[at] != words[at - 1])
                    and starts[at] > starts[at - 1]
                    and not text[starts[at] - 1].isspace()
                ):
                    return starts[at], starts[at], level
                at -= 1
        return None

    def _by_characters(self, start: int, past: int, first: int) -> tuple[int, int]:
        """The longest run of characters from ``start`` past ``past`` that fits, by fresh counts.

        Reached only when no token boundary fits: a chunk in the middle of a word whose pieces
        count more alone than within it.
        """
        text = self.text
        least = _skip_space(text, past) + 1  # shortest end that reaches past ``past``
        last = first + self.max_tokens
        most = max(least, len(text) if last >= self.n else self.starts[last])
        # The fresh count grows with the end (nearly: hence the check of what is found).
        low, high = least, most
        while low < high:
            middle = (low + high + 1) // 2
            if self.count(text[start:middle].rstrip()) <= self.max_tokens:
                low = middle
            else:
                high = middle - 1
        end = len(text[start:low].rstrip()) + start
        # ``end, tokens``; over the budget only for one character read as more than max_tokens
        # (at least 8) tokens, which no tokenizer does: no shorter chunk exists.
        return end, self.count(text[start:end])

    def _next_start(self, start: int, end: int, after: int) -> int:
        """Where the chunk after ``text[start:end]`` starts: after the most whole words of its end
        that fit in the overlap and do not push the next chunk's end to a lower level."""
        alone = _skip_space(self.text, after)
        if not self.overlap_tokens:
            return alone
        starts = self.starts
        stop = bisect_left(starts, end)
        shared = self._shared(start, end, stop - self.overlap_tokens)
        if shared is None:
            return alone
        # Say a paragraph fits alone but not after the overlap: the overlap shrinks, not the
        # paragraph (structure first); the next chunk then ends where it would with none.
        unshared = self._farthest(end, bisect_left(starts, alone) + self.max_tokens)
        overlapped = self._farthest(end, bisect_left(starts, shared) + self.max_tokens)
        if unshared is not None and (overlapped is None or overlapped[2] > unshared[2]):
            room = bisect_left(starts, unshared[0]) - self.max_tokens
            shared = self._shared(start, end, max(stop - self.overlap_tokens, room))
        return alone if shared is None else shared

    def _shared(self, start: int, end: int, need: int) -> int | None:
        """The earliest start of a word in ``text[start:end]`` that leaves out the tokens before
        token ``need`` and the overlap's tokens (``None``: no word does)."""
        at = max(start, self.starts[need - 1]) if need > 0 else start
        while (space := _SPACE.search(self.text, at, end)) is not None:
            at = space.end()
            if self._tokens(at, end) <= self.overlap_tokens:
                return at
        return None

    def _tokens(self, start: int, end: int) -> int:
        """Tokens of ``text[start:end]``: read off the offsets where exact, else counted afresh."""
        if self.exact:
            first = bisect_left(self.starts, start)
            stop = bisect_left(self.starts, end)
            if self._between_words(start, first) and self._between_words(end, stop):
                return stop - first
        return self.count(self.text[start:end])

    def _between_words(self, at: int, token: int) -> bool:
        """Whether character ``at`` (token ``token`` is the first to start there or after it)
        falls between two of the tokenizer's words, no token straddling it."""
        if token == 0:
            return True
        if self.ends[token - 1] > at:
            return False
        return token == self.n or self.words[token - 1] != self.words[token]


def _skip_space(text: str, at: int) -> int:
    """The first character at or after ``at`` that is not whitespace (or the end)."""
    space = _SPACE.match(text, at)
    return space.end() if space is not None else at

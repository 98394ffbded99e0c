"""BM42 sparse vectors (``qdrant-minilm-attention``): BM25's index space, attention as the weight.

BM42 keeps BM25's terms (Snowball stems hashed with ``abs(mmh3.hash(stem))``) and Qdrant's IDF
modifier, but replaces the term-frequency part with how much a transformer's ``[CLS]`` token
attends to the term. This module computes the same vectors as fastembed's
``Qdrant/bm42-all-minilm-l6-v2-attentions`` (an ONNX export of all-MiniLM-L6-v2 that returns its
last attention layer) by running the original weights with PyTorch:

1. the text is tokenized by the model's own word-piece tokenizer (truncated to the model's
   maximum length, at most 512 tokens),
2. the model runs; the last layer's attention is averaged over the heads and its ``[CLS]`` row is
   taken: one weight per token (padding masked to 0). Only that row is computed, from the last
   layer's input (see :func:`_cls_attention`), so no layer keeps a tokens x tokens matrix,
3. word pieces are glued back into words (a piece starting with ``##`` continues the previous
   word; special tokens, ``[UNK]`` included, are skipped without ending the word),
4. a word is dropped when it is a stopword (the bundled ``english.txt``) or a single ASCII
   punctuation character (``string.punctuation``, fastembed's rule),
5. the word is lowercased and Snowball-stemmed; its weight is the sum of its pieces' weights, and a
   stem seen several times in one text keeps its largest weight,
6. a document value is ``ln(1 + weight) ** alpha``; a query value is ``1.0`` per distinct id
   (the query side runs no model, only the tokenizer, as in fastembed).

The vectors are meant for a Qdrant sparse index with ``modifier="idf"``, like BM25's, and share
BM25's term ids, so metadata terms can be matched in either model's vectors with the same ids.
"""

from __future__ import annotations

import math
import string
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

import mmh3
from py_rust_stemmers import SnowballStemmer

from connector.errors import ModelError
from connector.sparse._model import SparseModel, SparseModelDescription
from connector.sparse._stemhash import format_number
from connector.sparse.bm25 import STOPWORDS_DIR
from connector.sparse.vector import SparseVec

if TYPE_CHECKING:
    from connector.settings import SparseSettings

__all__ = ["DEFAULT_BM42_MODEL", "MODEL_NAME", "Bm42", "SparseVec"]

MODEL_NAME = "qdrant-minilm-attention"
"""Registry name of this sparse model (the first part of :attr:`Bm42.signature`)."""

DEFAULT_BM42_MODEL = "all-MiniLM-L6-v2"
"""The transformer BM42 was defined with; resolves to the bundled copy when installed."""

# BERT-style position tables end at 512; tokenizers that do not know their limit report ~1e30.
_MAX_LENGTH_CAP = 512
# fastembed drops a reconstructed word when it is one of these exact strings; multi-character
# punctuation runs and non-ASCII punctuation (e.g. U+2019) are kept there, so they are kept here.
_PUNCTUATION = frozenset(string.punctuation)
# WordPiece's marker for "this piece continues the previous word"; read from the tokenizer when
# it says, otherwise BERT's.
_DEFAULT_CONTINUATION = "##"
# Bounds the word -> stem cache so a corpus full of unique words cannot grow it without limit.
_CACHE_LIMIT = 1 << 18

# (stem, positions of its pieces in the token sequence) for each kept word of one text.
_Plan = list[tuple[str, list[int]]]


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (loader errors can span many lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _rebuild(options: dict[str, Any]) -> Bm42:
    """Unpickling helper: rebuilds an encoder (model not loaded yet) from its options."""
    return Bm42(**options)


class Bm42(SparseModel):
    """BM42 sparse encoder: last-layer ``[CLS]`` attention of a word-piece transformer per stem.

    The tokenizer and the model load lazily and separately: queries and :meth:`term_ids` need only
    the tokenizer, so a search process never loads the weights.
    """

    description = SparseModelDescription(
        name=MODEL_NAME,
        flavour="torch",
        index_space="mmh3(snowball-stem)",
        idf=True,
        recommended_batch_size=64,
        base_model="sentence-transformers/all-MiniLM-L6-v2",
        weighting="bm42-attention",
        options_key="bm42",
        auto_avg_len=False,
    )

    @classmethod
    def options(cls, sparse: SparseSettings, *, avg_len: float | None = None) -> dict[str, Any]:
        return sparse.bm42.model_dump()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        # One forward pass per batch the runner hands over (it adapts that size on a GPU).
        return super().from_options(
            {"batch_size": cls.description.recommended_batch_size, **options}
        )

    def __init__(
        self,
        model: str = DEFAULT_BM42_MODEL,
        *,
        device: str | None = "cpu",
        batch_size: int = 32,
        alpha: float = 0.5,
    ) -> None:
        """Creates an encoder; nothing is loaded until first use.

        Args:
            model: The transformer: ``"all-MiniLM-L6-v2"`` (the bundled copy), a local folder or a
                hub id. It must use a WordPiece tokenizer for the word reconstruction to be right.
            device: Torch device for the model; ``None`` picks CUDA when available, else CPU.
            batch_size: Texts per forward pass, ``>= 1``.
            alpha: Exponent applied to ``ln(1 + weight)``, ``>= 0`` (0.5 as in fastembed).

        Raises:
            ValueError: If ``model`` is empty, or ``batch_size`` or ``alpha`` is out of range.
        """
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, int | float):
            raise ValueError(f"alpha must be a number, got {alpha!r}")
        alpha = float(alpha)
        if not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"alpha must be finite and >= 0, got {alpha!r}")

        self._model_name = model
        self._device = device
        self._batch_size = batch_size
        self._alpha = alpha
        self._stopwords = frozenset(
            (STOPWORDS_DIR / "english.txt").read_text(encoding="utf-8").splitlines()
        )
        self._stemmer = SnowballStemmer("english")
        self._stems: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._model: Any = None
        # The last layer's self-attention module, when the model is BERT-shaped.
        self._last_attention: Any = None
        # Filled with the tokenizer (see _load_tokenizer).
        self._special_tokens: frozenset[str] = frozenset()
        self._continuation = _DEFAULT_CONTINUATION
        self._max_length = _MAX_LENGTH_CAP

    def __repr__(self) -> str:
        return f"Bm42({self.signature!r})"

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        # Neither the Rust stemmer nor a lock pickles; rebuild from the options (process pools).
        return _rebuild, (
            {
                "model": self._model_name,
                "device": self._device,
                "batch_size": self._batch_size,
                "alpha": self._alpha,
            },
        )

    # ------------------------------------------------------------------ properties

    @property
    def signature(self) -> str:
        """Identifies the vector space; differs whenever an option that changes vectors differs.

        Returns:
            A string such as ``"qdrant-minilm-attention|all-MiniLM-L6-v2|alpha=0.5"``.
        """
        return f"{MODEL_NAME}|{self._model_name}|alpha={format_number(self._alpha)}"

    @property
    def device(self) -> str | None:
        """The device the model runs on (or will be loaded to); ``None`` means automatic."""
        return self._device

    @property
    def max_length(self) -> int:
        """Tokens per text the model sees (``[CLS]``/``[SEP]`` included); loads the tokenizer."""
        self._ensure_tokenizer()
        return self._max_length

    # ------------------------------------------------------------------ loading

    def _load_error(self, what: str, exc: BaseException) -> ModelError:
        return ModelError(
            f"sparse model {MODEL_NAME!r}: cannot load the {what} of {self._model_name!r} "
            f"({type(exc).__name__}: {_first_line(exc)}); give a local folder or a reachable "
            "hub id"
        )

    def _ensure_tokenizer(self) -> Any:
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    self._load_tokenizer()
        return self._tokenizer

    def _ensure_model(self) -> Any:
        self._ensure_tokenizer()
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._load_model()
        return self._model

    def _load_tokenizer(self) -> None:
        # Imported here so that importing the connector does not pay for transformers.
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        from connector.dense import resolve_model_path

        hf_logging.disable_progress_bar()
        where = resolve_model_path(self._model_name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(where)
        except Exception as exc:  # any loader failure means the same thing to the operator
            raise self._load_error("tokenizer", exc) from exc

        limit = getattr(tokenizer, "model_max_length", None)
        if not isinstance(limit, int) or limit <= 0:
            limit = _MAX_LENGTH_CAP
        backend = getattr(tokenizer, "backend_tokenizer", None)
        continuation = getattr(getattr(backend, "model", None), "continuing_subword_prefix", None)

        self._special_tokens = frozenset(tokenizer.all_special_tokens)
        self._continuation = continuation or _DEFAULT_CONTINUATION
        self._max_length = min(limit, _MAX_LENGTH_CAP)
        # Published last: other threads test this attribute without the lock.
        self._tokenizer = tokenizer

    def _load_model(self) -> None:
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        from connector.dense import resolve_model_path

        hf_logging.disable_progress_bar()
        where = resolve_model_path(self._model_name)
        device = self._device
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            model = AutoModel.from_pretrained(where)
            last = _last_self_attention(model)
            if last is None:
                # Not BERT-shaped: ask the model for its attention matrices (only eager
                # attention materialises them; SDPA/flash kernels never do).
                model = AutoModel.from_pretrained(where, attn_implementation="eager")
            model.eval()
            model.to(device)
        except Exception as exc:
            raise self._load_error("model", exc) from exc
        self._last_attention = last
        self._model = model

    def to(self, device: str) -> None:
        """Moves the model to ``device`` (or sets where it will load, if not loaded yet).

        Args:
            device: A torch device string, e.g. ``"cuda:0"`` or ``"cpu"``.
        """
        with self._lock:
            if self._model is not None:
                from connector.gpu._staging import move_module

                move_module(self._model, device)
            self._device = device

    # ------------------------------------------------------------------ text -> stems

    def _stem(self, word: str) -> str | None:
        """The stem a reconstructed word contributes, or ``None`` when the word is dropped."""
        try:
            return self._stems[word]
        except KeyError:
            pass
        # fastembed tests the word as the tokenizer produced it; for an uncased vocabulary that
        # is already lowercase, and lowercasing first keeps cased models' stopwords out too.
        lower = word.lower()
        stem: str | None
        if lower in self._stopwords or lower in _PUNCTUATION:
            stem = None
        else:
            stem = self._stemmer.stem_word(lower)
        if len(self._stems) >= _CACHE_LIMIT:
            self._stems.clear()
        self._stems[word] = stem
        return stem

    def _plan(self, tokens: Sequence[str]) -> _Plan:
        """Glues word pieces into words and keeps the stems of the words that survive filtering.

        Args:
            tokens: The tokenizer's tokens for one text, special tokens included.

        Returns:
            ``(stem, piece positions)`` per kept word, in text order (a stem may repeat).
        """
        special = self._special_tokens
        prefix = self._continuation
        cut = len(prefix)
        words: list[tuple[str, list[int]]] = []
        word = ""
        pieces: list[int] = []
        for position, token in enumerate(tokens):
            # Skipped without closing the current word, exactly like fastembed: "[UNK]" between
            # two pieces therefore does not split them.
            if token in special:
                continue
            if token.startswith(prefix):
                word += token[cut:]
                pieces.append(position)
            else:
                if word:
                    words.append((word, pieces))
                word = token
                pieces = [position]
        if word:
            words.append((word, pieces))

        plan: _Plan = []
        for text, positions in words:
            stem = self._stem(text)
            if stem is not None:
                plan.append((stem, positions))
        return plan

    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, with special tokens, truncated to :attr:`max_length`."""
        tokenizer = self._ensure_tokenizer()
        encoded = tokenizer(
            list(texts),
            truncation=True,
            max_length=self._max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return [list(ids) for ids in encoded["input_ids"]]

    def _plans(self, texts: Sequence[str]) -> tuple[list[list[int]], list[_Plan]]:
        ids = self._tokenize(texts)
        to_tokens = self._tokenizer.convert_ids_to_tokens
        return ids, [self._plan(to_tokens(row)) for row in ids]

    # ------------------------------------------------------------------ queries and terms

    def _distinct_ids(self, plan: _Plan) -> dict[int, str]:
        """term id -> first stem with that id, in first-occurrence order."""
        first: dict[int, str] = {}
        for stem, _ in plan:
            first.setdefault(abs(mmh3.hash(stem)), stem)
        return first

    def encode_query(self, text: str) -> SparseVec:
        """Encodes a query: every distinct term id gets weight 1.0 (Qdrant applies the IDF).

        Only the tokenizer runs, as in fastembed's ``query_embed``: the attention weights matter
        for documents, while a query term either is asked for or is not.

        Args:
            text: The query text.

        Returns:
            A vector with unique indices in first-occurrence order and all values 1.0.

        Raises:
            ModelError: The tokenizer cannot be loaded.
        """
        _, (plan,) = self._plans([text])
        first = self._distinct_ids(plan)
        return SparseVec(list(first), [1.0] * len(first), list(first.values()))

    def term_ids(self, term: str) -> list[tuple[int, str]]:
        """The ids (with their stems) a free-form term maps to in this model's index space.

        The term goes through the same word-piece, word, stopword and stem pipeline as
        documents, so the ids are exactly those a document containing the term would carry.

        Args:
            term: Free-form text, e.g. a metadata value such as ``"Running shoes"``.

        Returns:
            Distinct ``(id, stem)`` pairs in first-occurrence order; empty when nothing is kept.

        Raises:
            ModelError: The tokenizer cannot be loaded.
        """
        _, (plan,) = self._plans([term])
        return list(self._distinct_ids(plan).items())

    # ------------------------------------------------------------------ documents

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVec]:
        """Encodes documents into BM42 vectors.

        Texts are sorted by token count within the call so each batch is padded only to a
        similar length (at most twice a member's own); padding is masked, so a text's vector does
        not depend on its batch.

        Args:
            texts: The documents.

        Returns:
            One vector per document, in input order; an empty vector when nothing is kept.

        Raises:
            ModelError: The tokenizer or the model cannot be loaded.
        """
        texts = list(texts)
        out: list[SparseVec] = [SparseVec([], [], []) for _ in texts]
        if not texts:
            return out
        ids, plans = self._plans(texts)
        # Texts with nothing to keep (empty, all stopwords) need no forward pass at all.
        todo = [i for i, plan in enumerate(plans) if plan]
        if not todo:
            return out
        for batch in self._batches(todo, [len(row) for row in ids]):
            weights = self._token_weights([ids[i] for i in batch])
            for i, row in zip(batch, weights, strict=True):
                out[i] = self._vector(plans[i], row)
        return out

    def _batches(self, todo: list[int], lengths: list[int]) -> list[list[int]]:
        """Groups text positions into forward passes of similar token counts.

        Args:
            todo: Positions of the texts to run.
            lengths: Token count per position (of all texts, not only ``todo``).

        Returns:
            Batches of at most ``batch_size`` positions, longest texts first.
        """
        # Longest first: an out-of-memory error surfaces on the first batch, not the last.
        order = sorted(todo, key=lengths.__getitem__, reverse=True)
        batches: list[list[int]] = []
        batch: list[int] = []
        width = 0
        for i in order:
            # A batch also ends where a text is at most half its width: eager attention costs
            # batch * width**2, so one outlier must not pad a whole batch of short texts.
            if batch and (len(batch) == self._batch_size or 2 * lengths[i] <= width):
                batches.append(batch)
                batch = []
            if not batch:
                width = lengths[i]
            batch.append(i)
        if batch:
            batches.append(batch)
        return batches

    def _token_weights(self, batch: list[list[int]]) -> list[list[float]]:
        """Runs one batch; returns, per text, the ``[CLS]`` attention to each of its tokens.

        Args:
            batch: Token ids per text (special tokens included, unpadded).

        Returns:
            Per text, one weight per token of that text (the padding is cut off again).
        """
        import torch

        model = self._ensure_model()
        tokenizer = self._tokenizer
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        left = getattr(tokenizer, "padding_side", "right") == "left"
        width = max(map(len, batch))
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, token_ids in enumerate(batch):
            span = slice(width - len(token_ids), width) if left else slice(0, len(token_ids))
            input_ids[row, span] = torch.tensor(token_ids, dtype=torch.long)
            mask[row, span] = 1

        device = next(model.parameters()).device
        input_ids, mask = input_ids.to(device), mask.to(device)
        with torch.inference_mode():
            if self._last_attention is not None:
                cls_row = _run_to_last_attention(model, self._last_attention, input_ids, mask)
            else:
                output = model(input_ids=input_ids, attention_mask=mask, output_attentions=True)
                # (batch, heads, query, key) -> the [CLS] query row, averaged over heads.
                cls_row = output.attentions[-1][:, :, 0, :].float().mean(dim=1)
                del output
            # The mask multiplies padding to exactly 0, as fastembed does (softmax leaves ~0).
            rows = (cls_row * mask).cpu().tolist()
        del cls_row

        weights: list[list[float]] = []
        for row, token_ids in zip(rows, batch, strict=True):
            weights.append(row[width - len(token_ids) :] if left else row[: len(token_ids)])
        return weights

    def _vector(self, plan: _Plan, weights: list[float]) -> SparseVec:
        """Turns one text's kept words and token weights into its sparse vector."""
        # A word weighs the sum of its pieces; a repeated stem keeps its largest weight.
        best: dict[str, float] = {}
        for stem, positions in plan:
            weight = sum(weights[p] for p in positions)
            best[stem] = max(best.get(stem, 0.0), weight)

        alpha = self._alpha
        # term id -> (value, stem). A hash clash keeps the first position and the last value,
        # which is what fastembed's dict assignment yields.
        merged: dict[int, tuple[float, str]] = {}
        for stem, weight in best.items():
            merged[abs(mmh3.hash(stem))] = (math.log(1.0 + weight) ** alpha, stem)
        return SparseVec(
            list(merged),
            [value for value, _ in merged.values()],
            [stem for _, stem in merged.values()],
        )


class _Captured(Exception):
    """Ends a forward pass once the last layer's [CLS] attention is known."""


def _last_self_attention(model: Any) -> Any | None:
    """The last layer's self-attention of a BERT-shaped model, or ``None``."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not layers:
        return None
    attention = getattr(getattr(layers[-1], "attention", None), "self", None)
    needed = ("query", "key", "num_attention_heads", "attention_head_size")
    if attention is None or not all(hasattr(attention, name) for name in needed):
        return None
    return attention


def _cls_attention(module: Any, hidden: Any, mask: Any) -> Any:
    """The [CLS] row of ``module``'s attention probabilities, averaged over the heads.

    The same arithmetic as eager attention (``softmax(q k^T * scale + mask)``) restricted to the
    one query row BM42 reads: ``(batch, tokens)`` instead of ``(batch, heads, tokens, tokens)``.

    Args:
        module: A BERT self-attention module (``query``, ``key``, head count and size).
        hidden: Its input, ``(batch, tokens, hidden)``.
        mask: ``(batch, tokens)``, 1 for real tokens and 0 for padding.
    """
    import torch

    batch, tokens, _ = hidden.shape
    heads, size = module.num_attention_heads, module.attention_head_size
    query = module.query(hidden[:, :1]).view(batch, 1, heads, size).transpose(1, 2)
    key = module.key(hidden).view(batch, tokens, heads, size).transpose(1, 2)
    scale = getattr(module, "scaling", size**-0.5)
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    blocked = (1 - mask[:, None, None, :].to(scores.dtype)) * torch.finfo(scores.dtype).min
    probs = torch.softmax(scores + blocked, dim=-1)
    return probs[:, :, 0, :].float().mean(dim=1)


def _run_to_last_attention(model: Any, attention: Any, input_ids: Any, mask: Any) -> Any:
    """Runs ``model`` up to ``attention`` (its last self-attention) and returns the [CLS] row.

    The layers before run with the model's own (fused) attention kernels; the pass stops at the
    last layer's input, whose remaining work BM42 does not need.
    """
    captured: list[Any] = []

    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        captured.append(_cls_attention(module, hidden, mask))
        raise _Captured

    handle = attention.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model(input_ids=input_ids, attention_mask=mask)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError("the model's forward pass never reached its last attention layer")
    return captured[0]

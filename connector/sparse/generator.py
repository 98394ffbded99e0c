"""``SparseVectorGenerator``: sparse vectors for a batch of chunks that never fails the run.

The chain, per batch: the GPU (under a lease) → the CPU → a vector derived from
``metadata["sparse_features"]`` in the same index space as the model → ``None``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from operator import mul
from typing import Any

from connector.chunks import ChunkRecord
from connector.errors import ConfigError, ConnectorError, GpuLeaseUnavailable
from connector.gpu._batching import Workload
from connector.gpu._executor import DeviceExecutor
from connector.sparse._model import SparseEncoder, SparseModel, SparseModelDescription
from connector.sparse._registry import sparse_model
from connector.sparse.bm25 import Bm25
from connector.sparse.vector import SparseVec
from connector.telemetry import Telemetry

__all__ = [
    "ChunkRecord",
    "GpuLeaseUnavailable",
    "ModelRegistry",
    "SparseInferenceResult",
    "SparseVectorGenerator",
    "metadata_vector",
    "vector_dict",
]


@dataclass(slots=True)
class SparseInferenceResult:
    """What one :meth:`SparseVectorGenerator.generate` call produced.

    Attributes:
        vectors: One vector dict per chunk (see :func:`vector_dict`), or ``None``.
        fallback_count: Chunks whose vector did not come from the model.
        fallback_indices: Their positions in the input.
        latency_ms: Wall time of the call.
        device: Where the model ran (``cpu``, ``cuda:0``), or ``metadata`` when it never did.
        model_name: The sparse model asked for.
        success: False when the model failed to load or failed on a batch.
        error_message: What failed, without any chunk text.
        fallback_reasons: Position → why that chunk fell back.
    """

    vectors: list[dict[str, Any] | None]
    fallback_count: int
    fallback_indices: list[int]
    latency_ms: float
    device: str
    model_name: str
    success: bool
    error_message: str | None = None
    fallback_reasons: dict[int, str] = field(default_factory=dict)


class ModelRegistry:
    """Builds each sparse encoder once, from its registered class and the options given.

    Args:
        options: Constructor options per settings section (a class's ``options_key``), e.g.
            ``{"bm25": {"k": 1.2}, "splade": {"model": ...}}``; a model without an entry gets its
            defaults.
        encoders: Ready encoders by model name, used instead of building them (tests, plug-ins).
    """

    def __init__(
        self,
        options: dict[str, dict[str, Any]] | None = None,
        encoders: dict[str, SparseEncoder] | None = None,
    ) -> None:
        self.options = options or {}
        self.supplied: dict[str, SparseEncoder] = dict(encoders or {})
        """The encoders given, not built: a worker process's registry is given them too."""
        self._encoders: dict[str, SparseEncoder] = dict(self.supplied)

    def description(self, name: str) -> SparseModelDescription:
        """What the registered model ``name`` is.

        Raises:
            ConfigError: Unknown name.
        """
        return sparse_model(name).description

    def encoder(self, name: str) -> SparseEncoder:
        """The encoder of ``name`` (models inside load on first use).

        Raises:
            ConfigError: Unknown name or bad options.
        """
        if name not in self._encoders:
            model: type[SparseModel] = sparse_model(name)
            options = self.options.get(model.description.options_key, {})
            self._encoders[name] = model.from_options(options)
        return self._encoders[name]


class SparseVectorGenerator:
    """Sparse vectors for chunks, with the GPU → CPU → metadata fallback chain.

    Args:
        registry: Where encoders come from (default: every registered model, default options).
        executor: Runs the model on a leased GPU with adaptive batches, or on the CPU (default:
            the CPU only, as no lease pool is configured).
        telemetry: Spans and metrics (default: the global OpenTelemetry providers).
        logger: Log lines (counts and reasons only, never text).
    """

    def __init__(
        self,
        registry: ModelRegistry | None = None,
        executor: DeviceExecutor | None = None,
        telemetry: Telemetry | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.registry = registry or ModelRegistry()
        self.telemetry = telemetry or Telemetry()
        self.log = logger or logging.getLogger(__name__)
        self.executor = executor or DeviceExecutor(telemetry=self.telemetry, logger=self.log)

    def signature(self, model_name: str) -> str:
        """Identifies the index space and options of ``model_name``'s document vectors.

        Raises:
            ConfigError: ``model_name`` is not a registered model. Unlike :meth:`generate`, a
                signature is recorded on the collection: a stand-in would claim vectors of a
                model that never ran.
        """
        return self.registry.encoder(model_name).signature

    def encode_query(self, text: str, model_name: str) -> dict[str, Any]:
        """The query-side vector dict of ``model_name`` (it differs from documents for BM25/BM42).

        Raises:
            ConfigError: ``model_name`` is not a registered model: a query has no metadata to
                fall back on, and a vector in another model's space would match nothing.
            ModelError: The model cannot load, for the same reason.
        """
        described = self.registry.description(model_name)
        vec = self.registry.encoder(model_name).encode_query(text)
        return vector_dict(vec, described.weighting)

    def generate(
        self,
        chunks: Sequence[ChunkRecord],
        model_name: str,
        use_gpu: bool = False,
        device_ids: Sequence[int] | None = None,
    ) -> SparseInferenceResult:
        """Sparse vectors for ``chunks``; never raises for a model or device failure.

        A model that cannot load, an unknown ``model_name`` among them, gives ``success=False``,
        the reason in ``error_message`` (for an unknown name: the known ones) and every chunk's
        vector from its metadata; an unknown name's fall back in the default model's index space
        (``qdrant-bm25``'s stem hashes), where the connector's queries look by default.

        Args:
            chunks: The chunks, in order.
            model_name: A registered sparse model (``sparse.model``).
            use_gpu: Try to lease a GPU (ignored by the CPU-only BM25 flavours).
            device_ids: GPUs that may be leased; ``None``: any.

        Returns:
            One vector dict (see :func:`vector_dict`) or ``None`` per chunk, and how they came.

        Raises:
            ConfigError: A registered model's options are unusable (a required one is missing,
                one is out of range): a settings mistake that every later call would repeat.
        """
        started = time.perf_counter()
        try:
            described, unknown = self.registry.description(model_name), None
        except ConfigError as exc:
            # Its vectors land where the default model's queries look (stem hashes).
            described, unknown = Bm25.description, f"model unavailable: {exc}"
        run = _Run(model_name, described, len(chunks))
        encoder: SparseEncoder | None = None
        with self.telemetry.span("sparse_inference", {"model": model_name}) as span:
            if unknown is not None:
                run.fail(unknown)
            else:
                try:
                    encoder = self.registry.encoder(model_name)
                except ConfigError:
                    raise
                except ConnectorError as exc:
                    run.fail(f"model unavailable: {exc}")
            if encoder is not None:
                self._infer(encoder, described, chunks, run, use_gpu, device_ids)
            self._fall_back(chunks, run, encoder)
            latency = (time.perf_counter() - started) * 1000
            result = run.result(latency)
            attributes: dict[str, str | int | float] = {
                "model": model_name,
                "device": result.device,
                "latency_ms": round(latency, 3),
                "fallback_count": result.fallback_count,
                "chunk_count": len(chunks),
                "fallback_ratio": result.fallback_count / len(chunks) if chunks else 0.0,
            }
            span.set_attributes(attributes)
        self.telemetry.record_sparse(
            model=model_name,
            device=result.device,
            chunks=len(chunks),
            fallbacks=result.fallback_count,
            latency_ms=latency,
        )
        if result.fallback_count:
            self.log.warning(
                "sparse %s: %d of %d chunks fell back (%s)",
                model_name,
                result.fallback_count,
                len(chunks),
                result.error_message or "no model vector",
            )
        return result

    def _infer(
        self,
        encoder: SparseEncoder,
        described: SparseModelDescription,
        chunks: Sequence[ChunkRecord],
        run: _Run,
        use_gpu: bool,
        device_ids: Sequence[int] | None,
    ) -> None:
        # BM25 flavours are CPU algorithms (no `to`): a GPU request changes nothing for them.
        move = getattr(encoder, "to", None)
        move = move if callable(move) else None
        work: Workload[str, SparseVec] = Workload(
            name=described.name,
            encode=encoder.encode_documents,
            max_batch=described.recommended_batch_size,
            move=move,
            # Longest first pays for a model that pads a batch or meets device memory limits; an
            # algorithm on the CPU takes the texts as they come.
            size=len if move is not None else None,
        )
        outcome = self.executor.run(
            work, [chunk.text for chunk in chunks], use_gpu=use_gpu, device_ids=device_ids
        )
        run.device = outcome.device
        weighting = described.weighting
        run.vectors = [
            None if vec is None else vector_dict(vec, weighting) for vec in outcome.results
        ]
        if outcome.fatal is not None:
            run.fail(f"model unavailable: {outcome.fatal}")
        elif outcome.failures:
            run.fail(outcome.failures[min(outcome.failures)])

    def _fall_back(
        self, chunks: Sequence[ChunkRecord], run: _Run, encoder: SparseEncoder | None
    ) -> None:
        missing = [i for i, vector in enumerate(run.vectors) if vector is None]
        if not missing:
            return
        mapper = _term_mapper(encoder, run.described)
        reason = run.error_message or "model produced no vector"
        for i in missing:
            run.fallback_reasons[i] = reason
            vec = metadata_vector(chunks[i].metadata, mapper)
            run.vectors[i] = vector_dict(vec, "metadata") if vec is not None else None
        if run.fallback_reasons:
            self.telemetry.event(
                "fallback",
                {
                    "model": run.model_name,
                    "from": run.device,
                    "to": "metadata",
                    "reason": reason,
                    "chunks": len(run.fallback_reasons),
                },
            )


class _Run:
    """Mutable state of one generate call."""

    def __init__(self, model_name: str, described: SparseModelDescription, count: int) -> None:
        self.model_name = model_name
        self.described = described
        self.vectors: list[dict[str, Any] | None] = [None] * count
        self.fallback_reasons: dict[int, str] = {}
        self.error_message: str | None = None
        self.device = "metadata"

    def fail(self, message: str) -> None:
        if self.error_message is None:
            self.error_message = message

    def result(self, latency_ms: float) -> SparseInferenceResult:
        indices = sorted(self.fallback_reasons)
        return SparseInferenceResult(
            vectors=self.vectors,
            fallback_count=len(indices),
            fallback_indices=indices,
            latency_ms=latency_ms,
            device=self.device,
            model_name=self.model_name,
            success=self.error_message is None,
            error_message=self.error_message,
            fallback_reasons=self.fallback_reasons,
        )


def _term_mapper(
    encoder: Any, described: SparseModelDescription
) -> Callable[[str], list[int]] | None:
    """Maps a free-form term into the model's index space.

    The model's own tokenizer is asked first. BM25 and BM42 share the stem-hash space, so when
    BM42's tokenizer is unavailable too, BM25's stemmer and hash still land terms where queries
    look; a vocabulary space (SPLADE) has no such stand-in.
    """
    stand_in = _stand_in() if described.index_space == Bm25.description.index_space else None

    def mapper(term: str) -> list[int]:
        if encoder is not None and hasattr(encoder, "term_ids"):
            try:
                return [term_id for term_id, _ in encoder.term_ids(term)]
            except Exception:
                if stand_in is None:
                    raise
        if stand_in is None:
            raise LookupError("no tokenizer for this index space")
        return [term_id for term_id, _ in stand_in.term_ids(term)]

    return mapper


@cache
def _stand_in() -> Bm25:
    """BM25 with default options, shared: its stemmer and hash are all a fallback needs of it."""
    return Bm25()


def metadata_vector(
    metadata: dict[str, Any], mapper: Callable[[str], list[int]] | None
) -> SparseVec | None:
    """A vector from ``metadata["sparse_features"]``, or ``None`` when there is nothing usable.

    Accepts a ready ``{"indices": [...], "values": [...]}`` pair (taken as already in the model's
    index space), or a map of term → weight whose terms go through ``mapper`` (the model's own
    tokenizer, stemmer and hash), so queries still match. Weights of one id add up.
    """
    features = metadata.get("sparse_features") if isinstance(metadata, dict) else None
    if not isinstance(features, dict) or not features:
        return None
    weights: dict[int, float] = {}
    terms: dict[int, str] = {}
    if "indices" in features and "values" in features:
        indices, values = features["indices"], features["values"]
        if not isinstance(indices, list) or not isinstance(values, list):
            return None
        if len(indices) != len(values):
            return None
        for index, value in zip(indices, values, strict=True):
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                continue
            if not _usable(value):
                continue
            weights[index] = weights.get(index, 0.0) + float(value)
            terms.setdefault(index, str(index))
    elif mapper is not None:
        for term, value in features.items():
            if not isinstance(term, str) or not _usable(value):
                continue
            try:
                ids = mapper(term)
            except Exception:
                return None  # the model's tokenizer is unavailable too
            for term_id in ids:
                weights[term_id] = weights.get(term_id, 0.0) + float(value)
                terms.setdefault(term_id, term)
    weights = {k: v for k, v in weights.items() if v > 0}
    if not weights:
        return None
    return SparseVec(list(weights), list(weights.values()), [terms[k] for k in weights])


def _usable(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value > 0
    )


def vector_dict(vec: SparseVec, weighting: str) -> dict[str, Any]:
    """The seed's vector dict: ``indices``, ``values``, ``tokens`` and ``stats``.

    Values are the model's own (not rescaled: BM25 must stay equal to fastembed's);
    ``stats.weight_norm`` is their L2 norm. The dict takes ``vec``'s lists as they are, without
    copies: an encoder hands each vector over with lists of its own (see
    :meth:`~connector.sparse.SparseEncoder.encode_documents`).
    """
    indices, values = vec.indices, vec.values
    total = vec.total_terms
    return {
        "indices": indices,
        "values": values,
        "tokens": vec.tokens,
        "stats": {
            # fsum of the same rounded squares as a generator gives, without a Python frame each.
            "weight_norm": math.sqrt(math.fsum(map(mul, values, values))),
            "unique_terms": len(indices),
            "total_terms": len(indices) if total is None else total,
            "weighting": weighting,
        },
    }

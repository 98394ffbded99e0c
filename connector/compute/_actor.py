"""What one Ray actor of a sync runs: the connector's own encoding stages, built from settings.

The class is plain Python (Ray wraps it when the run starts, :mod:`connector.compute._ray`), so the
same code runs in an actor and, in tests, in this process. Inside an actor the connector's GPU
lease, VRAM caps, adaptive batches and fallbacks apply as in a local sync: a process of the node
that is not part of the Ray run sees the GPU leased, and the actor waits for it or falls back.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from connector import __version__
from connector.pipeline._encode import DenseEncode, SparseEncode
from connector.pipeline._plan import Window

if TYPE_CHECKING:
    from connector.settings import Settings

__all__ = ["ActorReport", "EncodeActor", "Encoded", "Role"]

Role = Literal["dense", "sparse", "encode"]
"""What an actor computes: the dense models, the sparse model, or both (``encode``)."""


@dataclass(slots=True)
class ActorReport:
    """An actor's account of itself after a window: where it runs and what it did so far."""

    index: int
    role: Role
    node: str
    device: str
    batch_size: int | None
    chunks: int
    busy_s: float
    devices: list[dict[str, Any]] = field(default_factory=list)
    """The GPUs it ran on, as :class:`~connector.runs.manifest.DeviceUsage` fields."""


@dataclass(slots=True)
class Encoded:
    """One window's share computed by one actor: its vectors and what the record needs."""

    vectors: dict[str, dict[int, Any]]
    dense_ms: float
    sparse: Any
    fallbacks: dict[int, str]
    sparse_empty: int
    report: ActorReport


class EncodeActor:
    """Encodes windows with the configured models, in the role it was given.

    Args:
        settings: The driver's settings (the models, the ``gpu`` section, ``state_dir`` for
            the node's GPU leases).
        role: What it computes.
        index: Its number in the run (names it in reports).
        sparse: Whether the run computes sparse vectors (the driver's switch decides).
        avg_len: BM25's ``avg_len`` as the driver resolved it (``avg_len = "auto"``).
        node: Names its machine in reports; default: this host's name.
    """

    def __init__(
        self,
        settings: Settings,
        role: Role,
        index: int,
        *,
        sparse: bool = True,
        avg_len: float | None = None,
        node: str | None = None,
    ) -> None:
        from connector.wiring import dense_encoders, dense_stage, device_executor, sparse_target

        self.role = role
        self.index = index
        self.gpu = settings.gpu
        self.node = node or socket.gethostname()
        holder = f"connector sync (ray actor {index})"
        self.executor = device_executor(settings, holder=holder)
        self.dense_stage = dense_stage(settings, self.executor)
        self.encode_dense: DenseEncode | None = None
        self.encode_sparse: SparseEncode | None = None
        self.signatures: dict[str, str] = {}
        if role in ("dense", "encode"):
            encoders = dense_encoders(settings)
            telemetry = self.dense_stage.telemetry
            device = "gpu" if settings.gpu.enabled else "cpu"
            self.encode_dense = DenseEncode(encoders, self.dense_stage, telemetry, device)
            self.signatures |= {e.name: e.signature for e in encoders}
        if role in ("sparse", "encode") and sparse:
            target = sparse_target(settings, self.executor, avg_len=avg_len)
            self.encode_sparse = SparseEncode(target, self.dense_stage.telemetry)
            self.signatures[target.vector_name] = target.signature
        self._chunks = 0
        self._busy_s = 0.0
        self._batch: int | None = None

    def ready(self) -> dict[str, Any]:
        """Who it is and what its models write: the driver checks every node computes the
        same vectors it would (same connector, same models)."""
        return {
            "version": __version__,
            "node": self.node,
            "role": self.role,
            "signatures": dict(self.signatures),
        }

    def encode(self, window: Window) -> Encoded:
        """Computes the window's vectors of this actor's role."""
        started = time.perf_counter()
        if self.encode_dense is not None:
            window = self.encode_dense(window)
        if self.encode_sparse is not None:
            window = self.encode_sparse(window)
        self._busy_s += time.perf_counter() - started
        names = set(window.vectors)
        self._chunks += len({i for name in names for i in window.needs.get(name, ())})
        sizes = self.executor.batcher.sizes()
        if sizes:
            self._batch = max(sizes.values())
        return Encoded(
            vectors=window.vectors,
            dense_ms=window.dense_ms,
            sparse=window.sparse,
            fallbacks=window.fallbacks,
            sparse_empty=window.sparse_empty,
            report=self.report(),
        )

    def report(self) -> ActorReport:
        """Its account as of now."""
        from connector.wiring import device_usage

        executors = self.dense_stage.executors
        held = [e.held_device for e in executors if e.held_device is not None]
        batch = self._batch
        if batch is None and self.encode_dense is not None:
            # On the CPU a model's batches are its own size: the largest of the ensemble's.
            sizes = [int(getattr(e, "batch_size", 0)) for e in self.encode_dense.dense]
            batch = max(sizes, default=0) or None
        return ActorReport(
            index=self.index,
            role=self.role,
            node=self.node,
            device=",".join(held) or "cpu",
            batch_size=batch,
            chunks=self._chunks,
            busy_s=round(self._busy_s, 3),
            devices=[
                usage.model_dump(mode="json")
                for usage in device_usage(executors, self.gpu)
            ],
        )

    def close(self) -> None:
        """Gives back a GPU still leased."""
        try:
            self.dense_stage.close()
        finally:
            self.executor.close()

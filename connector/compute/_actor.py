"""What one Ray actor of a sync runs: the connector's own encoding stages, built from settings.

The class is plain Python (Ray wraps it when the run starts, :mod:`connector.compute._ray`), so the
same code runs in an actor and, in tests, in this process. Inside an actor the connector's GPU
lease, VRAM caps, adaptive batches and fallbacks apply as in a local sync: a process of the node
that is not part of the Ray run sees the GPU leased, and the actor waits for it or falls back.
Against a Qdrant server an actor also writes the points of the windows it finishes.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from connector import __version__
from connector.pipeline._build import Builder
from connector.pipeline._encode import DenseEncode, SparseEncode
from connector.pipeline._plan import Window
from connector.sources._reading import FileChunks, cut_data
from connector.store import WriteCounts
from connector.telemetry import context_from, setup_telemetry

if TYPE_CHECKING:
    from connector.chunking import TokenChunker
    from connector.settings import Settings
    from connector.sparse.target import SparseTarget
    from connector.store import Writer

__all__ = ["ActorReport", "EncodeActor", "Encoded", "Role", "WriteTarget"]

Role = Literal["dense", "sparse", "encode", "write"]
"""What an actor does: the dense models, the sparse model, both (``encode``), or only write what
others computed (``write``)."""


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
    files: int = 0
    """Files of a folder it read and cut into chunks."""


@dataclass(frozen=True, slots=True)
class WriteTarget:
    """What an actor needs to write a window's points as the driver would have."""

    run_id: str
    source: str
    collection: str
    signatures: dict[str, str]
    dense_names: list[str]


@dataclass(slots=True)
class Encoded:
    """One window's share computed by actors: its vectors (none once written) and what the
    run's record needs."""

    vectors: dict[str, dict[int, Any]]
    dense_ms: float
    sparse: Any
    fallbacks: dict[int, str]
    sparse_empty: int
    reports: list[ActorReport]
    """The accounts of every actor that worked on the window."""
    written: WriteCounts | None = None
    """What Qdrant acknowledged when an actor wrote the window's points."""


class EncodeActor:
    """Encodes windows with the configured models, in the role it was given.

    Args:
        settings: The driver's settings (the models, the ``gpu`` section, ``state_dir`` for
            the node's GPU leases, the ``qdrant`` section to write to a server).
        role: What it does.
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

        self.settings = settings
        self.role = role
        self.index = index
        self.node = node or socket.gethostname()
        holder = f"connector sync (ray actor {index})"
        # Its spans (dense, sparse_inference, upsert) go where the driver's go, as traces of
        # their own: an actor is a process of its own.
        telemetry = setup_telemetry(settings.telemetry)
        self.telemetry = telemetry
        self.executor = device_executor(settings, holder=holder, telemetry=telemetry)
        self.dense_stage = dense_stage(settings, self.executor, telemetry=telemetry)
        self.encode_dense: DenseEncode | None = None
        self.encode_sparse: SparseEncode | None = None
        self.signatures: dict[str, str] = {}
        # The sparse model runs here, or its names go into the payloads (a fallback's note) of
        # what this actor writes; a dense actor beside sparse ones needs neither.
        self.sparse_target: SparseTarget | None = None
        if sparse and role != "dense":
            self.sparse_target = sparse_target(
                settings, self.executor, avg_len=avg_len, telemetry=telemetry
            )
        if role in ("dense", "encode"):
            encoders = dense_encoders(settings)
            device = "gpu" if settings.gpu.enabled else "cpu"
            self.encode_dense = DenseEncode(encoders, self.dense_stage, telemetry, device)
            self.signatures |= {e.name: e.signature for e in encoders}
        if role in ("sparse", "encode") and self.sparse_target is not None:
            self.encode_sparse = SparseEncode(self.sparse_target, telemetry)
            self.signatures[self.sparse_target.vector_name] = self.sparse_target.signature
        self._writer: Writer | None = None
        self._chunker: TokenChunker | None = None
        self._files = 0
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

    def encode(
        self,
        window: Window,
        *parts: Encoded,
        target: WriteTarget | None = None,
        trace: dict[str, str] | None = None,
    ) -> Encoded:
        """Computes the window's vectors of this actor's role, with what other actors computed
        (``parts``) merged in; with ``target``, also writes the window's points.

        Its ``ray_window`` span, and the ``dense``, ``sparse_inference`` and ``upsert`` spans
        under it, continue the driver's trace given in ``trace`` (W3C headers).

        Raises:
            ConnectorError: A model failed as it would in a local sync, or Qdrant refused a
                write.
        """
        attributes = {
            "role": self.role,
            "actor": self.index,
            "node": self.node,
            "chunk_count": len(window.items),
        }
        with self.telemetry.span("ray_window", attributes, parent=context_from(trace)):
            return self._encode(window, parts, target)

    def _encode(
        self, window: Window, parts: tuple[Encoded, ...], target: WriteTarget | None
    ) -> Encoded:
        started = time.perf_counter()
        for part in parts:
            merge(window, part)
        before = set(window.vectors)
        if self.encode_dense is not None:
            window = self.encode_dense(window)
        if self.encode_sparse is not None:
            window = self.encode_sparse(window)
        computed = set(window.vectors) - before if self.role != "write" else set(window.vectors)
        self._chunks += len({i for name in computed for i in window.needs.get(name, ())})
        written = self._write(window, target) if target is not None else None
        self._busy_s += time.perf_counter() - started
        sizes = self.executor.batcher.sizes()
        if sizes:
            self._batch = max(sizes.values())
        return Encoded(
            vectors={} if written is not None else window.vectors,
            dense_ms=window.dense_ms,
            sparse=window.sparse,
            fallbacks=window.fallbacks,
            sparse_empty=window.sparse_empty,
            reports=[*(r for part in parts for r in part.reports), self.report()],
            written=written,
        )

    def take_chunker(self, chunker: TokenChunker) -> None:
        """Keeps the chunker that cuts the files it is given (once per read of a folder)."""
        self._chunker = chunker

    def cut(self, data: bytes, suffix: str, where: str, relative: str) -> FileChunks:
        """A folder's file read by its format and cut into chunk records, as the driver's own
        readers would (see :func:`connector.sources._reading.cut_data`)."""
        if self._chunker is None:
            raise RuntimeError("cut() before take_chunker()")
        started = time.perf_counter()
        try:
            return cut_data(self._chunker, data, suffix, where, relative)
        finally:
            self._files += 1
            self._busy_s += time.perf_counter() - started

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
                for usage in device_usage(executors, self.settings.gpu)
            ],
            files=self._files,
        )

    def close(self) -> None:
        """Gives back a GPU still leased, closes its connection to Qdrant and exports the spans
        it still holds."""
        try:
            self.dense_stage.close()
        finally:
            self.executor.close()
            if self._writer is not None:
                self._writer.close()
                self._writer.store.close()
            self.telemetry.shutdown()

    def _write(self, window: Window, target: WriteTarget) -> WriteCounts:
        """Writes the window's points and waits for Qdrant to acknowledge them."""
        from connector.runs.record import RunRecord
        from connector.wiring import chunk_writer, open_store

        if self._writer is None:
            store = open_store(self.settings, telemetry=self.dense_stage.telemetry)
            self._writer = chunk_writer(self.settings, store, target.collection)
        # The payloads name the driver's run, as if the driver had written them.
        record = RunRecord(
            run_id=target.run_id, source=target.source, collection=target.collection, batch_size=0
        )
        build = Builder(
            record,
            target.signatures,
            target.dense_names,
            self.sparse_target,
            self.dense_stage.telemetry,
        )
        counts = WriteCounts()
        self._writer.begin(counts)
        try:
            self._writer.submit(build.writes(window))
            self._writer.flush()
        finally:
            self._writer.end()
        return counts


def merge(window: Window, part: Encoded) -> None:
    """Takes what an actor computed for ``window`` into it."""
    window.vectors.update(part.vectors)
    window.dense_ms = max(window.dense_ms, part.dense_ms)
    if part.sparse is not None:
        window.sparse = part.sparse
        window.fallbacks = part.fallbacks
        window.sparse_empty = part.sparse_empty


def add_counts(total: WriteCounts, more: WriteCounts) -> None:
    """Adds what an actor's writes were acknowledged to the run's counts."""
    for name in (f.name for f in dataclasses.fields(WriteCounts)):
        setattr(total, name, getattr(total, name) + getattr(more, name))

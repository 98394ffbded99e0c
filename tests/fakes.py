"""Small fakes of the connector's collaborators, kept next to the tests that use them."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from connector.chunks import ChunkRecord
from connector.sources import SkipLog

if TYPE_CHECKING:
    from connector.wiring import SyncJob


class FakeDense:
    """A deterministic dense encoder: a hashed bag of words, L2-normalised. Counts its calls."""

    def __init__(self, name: str = "fake", dim: int = 16, version: str = "1") -> None:
        self.name = name
        self.dim = dim
        self.version = version
        self.calls = 0
        self.texts_encoded = 0

    @property
    def signature(self) -> str:
        return f"fake|dim={self.dim}|v={self.version}"

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self.dim
        for word in text.lower().split():
            digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
            vector[int.from_bytes(digest, "little") % self.dim] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        self.texts_encoded += len(texts)
        return [self._vector(text) for text in texts]

    def encode_query(self, text: str) -> list[float]:
        return self._vector(text)


class ListSource:
    """A source over a list of chunks, named like a real one."""

    def __init__(self, chunks: Sequence[ChunkRecord], name: str = "memory://test") -> None:
        self.chunks = list(chunks)
        self.name = name
        self.total_bytes: int | None = None
        self.bytes_read = 0
        self.skips = SkipLog()

    def __iter__(self) -> Iterator[ChunkRecord]:
        for chunk in self.chunks:
            self.bytes_read += len(chunk.text)
            yield chunk


def chunk(chunk_id: str, text: str, **metadata: object) -> ChunkRecord:
    return ChunkRecord(text=text, metadata=dict(metadata), chunk_id=chunk_id, location=chunk_id)


# --------------------------------------------------------------------------- a simulated GPU

GIB = 1 << 30


class FakeProbe:
    """A probe that reports ``count`` GPUs of ``total_bytes`` each (``used`` per index)."""

    def __init__(
        self, count: int = 1, total_bytes: int = 16 * GIB, used: dict[int, int] | None = None
    ) -> None:
        from connector.gpu import DeviceInfo

        self.infos = [
            DeviceInfo(
                index=i,
                name="Simulated GPU",
                uuid=f"GPU-0000000{i}-fake",
                total_bytes=total_bytes,
                used_bytes=(used or {}).get(i, 0),
                utilisation_pct=0,
            )
            for i in range(count)
        ]

    def devices(self) -> list:
        return list(self.infos)


def fake_cuda(info: object) -> str:
    """Every probed GPU is visible to this process as ``cuda:<index>``."""
    return f"cuda:{info.index}"  # type: ignore[attr-defined]


class FakeMemory:
    """Device memory of the simulated GPU: the models below report their peaks into it."""

    def __init__(self, total: int = 16 * GIB) -> None:
        self.total = total
        self.caps: dict[str, int] = {}
        self.peak = 0
        self.frees = 0

    def total_bytes(self, device: str) -> int:
        return self.total

    def set_hard_cap(self, device: str, cap_bytes: int) -> None:
        self.caps[device] = cap_bytes

    def reset_peak(self, device: str) -> None:
        self.peak = 0

    def peak_bytes(self, device: str) -> int:
        return self.peak

    def free(self, device: str) -> None:
        self.frees += 1

    def budget(self, device: str) -> int:
        """What the allocator lets the process have: the hard cap once one is set."""
        return min(self.caps.get(device, self.total), self.total)


class HungryModel:
    """A movable model whose batches need device memory: ``cost(item)`` bytes per item.

    Past the device's budget (the hard cap set on ``memory``) a batch raises torch's own
    ``torch.cuda.OutOfMemoryError``; below it, the batch's need becomes the device's peak.
    ``calls`` records (device, batch size) of every attempt, failed ones included.
    """

    def __init__(
        self,
        memory: FakeMemory,
        cost: int | Callable[[str], int] = GIB,
        *,
        gpu_error: type[Exception] | None = None,
        cpu_error: type[Exception] | None = None,
        hydrate_error: type[Exception] | None = None,
    ) -> None:
        self.memory = memory
        self.cost = cost if callable(cost) else (lambda _item, c=cost: c)
        self.gpu_error = gpu_error
        self.cpu_error = cpu_error
        self.hydrate_error = hydrate_error
        self.device = "cpu"
        self.moves: list[str] = []
        self.calls: list[tuple[str, int]] = []
        self.batches: list[list[str]] = []

    def to(self, device: str) -> None:
        if device != "cpu" and self.hydrate_error is not None:
            raise self.hydrate_error("cannot hydrate")
        self.moves.append(device)
        self.device = device

    def encode(self, items: Sequence[str]) -> list[str]:
        import torch

        self.calls.append((self.device, len(items)))
        self.batches.append(list(items))
        if self.device == "cpu":
            if self.cpu_error is not None:
                raise self.cpu_error(f"cpu failed on {items[0]}")
        else:
            if self.gpu_error is not None:
                raise self.gpu_error(f"gpu failed on {items[0]}")
            need = sum(self.cost(item) for item in items)
            if need > self.memory.budget(self.device):
                raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried {need} bytes")
            self.memory.peak = max(self.memory.peak, need)
        return [f"v({item})" for item in items]

    def gpu_sizes(self) -> list[int]:
        return [size for device, size in self.calls if device != "cpu"]


def recording_telemetry() -> tuple[object, object]:
    """A Telemetry whose finished spans land in the returned in-memory exporter."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from connector.telemetry import Telemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Telemetry(provider), exporter


def simulated_gpu_job(
    tmp_path: Path,
    dense: Sequence[object],
    chunks: Sequence[ChunkRecord],
    *,
    gpus: int = 1,
    batch_size: int = 4,
    memory: FakeMemory | None = None,
    telemetry: object = None,
    record: bool = False,
) -> SyncJob:
    """A sync of ``chunks`` wired as ``connector sync --gpu`` wires it (sparse off, the edge
    engine under ``tmp_path/qdrant``, state under ``tmp_path/state``), its models on ``gpus``
    simulated GPUs instead of NVML's, GPUs given back after 60 idle seconds."""
    from connector.gpu import BatchPolicy, DeviceExecutor, LeasePool
    from connector.settings import load_settings
    from connector.store.edge import EdgeClient
    from connector.wiring import build_syncer

    state = tmp_path / "state"
    conf = load_settings(
        None, {"state_dir": str(state), "gpu": {"enabled": True, "idle_release_s": 60}}
    )
    job = build_syncer(
        conf,
        source=ListSource(chunks),
        dense=dense,
        client=EdgeClient(tmp_path / "qdrant"),
        sparse=False,
        telemetry=telemetry,
        record=record,
    )
    pool = LeasePool(state, FakeProbe(gpus), timeout_s=5, cuda_device=fake_cuda)
    executor = DeviceExecutor(
        pool, BatchPolicy(), memory or FakeMemory(), telemetry, idle_release_s=60
    )
    job.syncer.dense_stage.executor = executor  # its own executor would ask NVML
    job.executor = executor
    job.syncer.batch_size = batch_size
    return job

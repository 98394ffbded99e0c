"""GPU throughput: dense (MiniLM) + sparse (BM42) with leases and adaptive batches vs raw loops.

Both sides encode the same synthesised chunks in the same windows (``--window``, the sync's batch
size) on the same device:

* reference: the models stay on the device; a plain loop calls ``SentenceTransformer.encode`` and
  ``Bm42.encode_documents`` per window (no lease, no cap, no staging, no adaptation);
* ours: what ``connector sync`` runs: per window, ``DenseStage`` then ``SparseVectorGenerator``
  through one ``DeviceExecutor`` (one lease held across the windows, the hard cap set, one model
  resident at a time: MiniLM and BM42 swap each window, staged back to the CPU and hydrated again,
  adaptive batch sizes). ``--idle-release-s 0`` gives the lease back after every stage instead.

It prints chunks/s of each side and their ratio, peak VRAM against the caps, and the decisions
taken (leases, OOMs, soft-limit hits, batch-size changes, fallbacks). Without a GPU it runs both
sides on the CPU (use a small ``--chunks`` there) and says so.

    python bench/gpu.py --chunks 20000
    python bench/gpu.py --chunks 300            # CPU smoke run
    python bench/gpu.py --hard-cap-gb 1 --soft-limit-gb 0.5   # watch the batches adapt
    python bench/gpu.py --idle-release-s 0       # a lease per stage and window, for comparison
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from connector.chunks import ChunkRecord
from connector.dense import SentenceTransformerEncoder, resolve_model_path
from connector.gpu import GIB, BatchPolicy, DeviceExecutor, LeasePool, NvmlProbe
from connector.pipeline.stages import DenseStage
from connector.settings import DenseModelConfig
from connector.sparse.bm42 import Bm42
from connector.sparse.generator import ModelRegistry, SparseVectorGenerator
from connector.telemetry import Telemetry

SPARSE_MODEL = "qdrant-minilm-attention"


class CountingTelemetry(Telemetry):
    """Counts the executor's decisions by event name (and fallbacks by destination)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.held_ms = 0.0
        """Time the leases were held, from their release events."""

    def event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        key = name
        if name == "fallback" and attributes:
            key = f"fallback to {attributes.get('to')}"
        if name == "gpu_lease_released" and attributes:
            self.held_ms += float(attributes.get("held_ms", 0.0))
        self.counts[key] += 1
        super().event(name, attributes)


def load_texts(path: Path | None) -> list[str]:
    if path is None:
        source = resources.files("connector") / "data" / "example_corpus.jsonl"
        lines = source.read_text(encoding="utf-8").splitlines()
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
    texts = []
    for line in lines:
        if line.strip():
            row = json.loads(line)
            texts.append(str(row.get("text") or ""))
    return [t for t in texts if t.strip()]


def synthesise(docs: list[str], count: int, seed: int = 7) -> list[str]:
    """``count`` chunks: documents rotated and cut at random, a fifth of them two joined."""
    rng = random.Random(seed)
    chunks = []
    for _ in range(count):
        words = docs[rng.randrange(len(docs))].split()
        if rng.random() < 0.2:
            words += docs[rng.randrange(len(docs))].split()
        start = rng.randrange(len(words))
        rotated = words[start:] + words[:start]
        keep = max(8, int(len(rotated) * rng.uniform(0.3, 1.0)))
        chunks.append(" ".join(rotated[:keep]))
    return chunks


def windows(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


class Vram:
    """Peak VRAM of one side (torch's allocator), or nothing without a GPU."""

    def __init__(self, device: str | None) -> None:
        self.device = device

    def reset(self) -> None:
        if self.device:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peaks(self) -> tuple[int, int] | None:
        if not self.device:
            return None
        import torch

        return (
            int(torch.cuda.max_memory_allocated(self.device)),
            int(torch.cuda.max_memory_reserved(self.device)),
        )


def reference(chunks: list[str], args: argparse.Namespace, device: str) -> dict[str, float]:
    from sentence_transformers import SentenceTransformer

    dense = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device=device)
    sparse = Bm42(device=device, batch_size=64)
    dense.encode(["warm up"], show_progress_bar=False)
    sparse.encode_documents(["warm up"])
    parts = windows(chunks, args.window)

    def dense_loop() -> None:
        for part in parts:
            dense.encode(
                part,
                batch_size=args.dense_batch,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).tolist()

    def sparse_loop() -> None:
        for part in parts:
            sparse.encode_documents(part)

    return {"dense": timed(dense_loop), "sparse": timed(sparse_loop)}


def ours(
    chunks: list[str], args: argparse.Namespace, telemetry: CountingTelemetry, state: Path
) -> dict[str, float]:
    policy = BatchPolicy(
        hard_cap_bytes=int(args.hard_cap_gb * GIB),
        soft_limit_bytes=int(args.soft_limit_gb * GIB),
        min_batch=args.min_batch,
    )
    pool = LeasePool(state, timeout_s=10, holder="bench/gpu.py")
    executor = DeviceExecutor(pool, policy, telemetry=telemetry, idle_release_s=args.idle_release_s)
    encoder = SentenceTransformerEncoder(
        DenseModelConfig(model="all-MiniLM-L6-v2", batch_size=args.dense_batch)
    )
    stage = DenseStage(executor, use_gpu=True, telemetry=telemetry)
    generator = SparseVectorGenerator(ModelRegistry(), executor, telemetry)
    # Loaded (on the CPU, where they wait between uses) before the clock starts, as for the
    # reference; hydrating to the GPU and staging back is part of what is timed.
    stage.encode(encoder, ["warm up"])
    generator.generate([ChunkRecord(text="warm up")], SPARSE_MODEL, use_gpu=True)
    executor.close()  # the timed run takes its own lease, as a sync does
    telemetry.counts.clear()

    spent = {"dense": 0.0, "sparse": 0.0}
    fallbacks = 0
    for part in windows(chunks, args.window):
        spent["dense"] += timed(lambda part=part: stage.encode(encoder, part))
        records = [ChunkRecord(text=text) for text in part]
        started = time.perf_counter()
        result = generator.generate(records, SPARSE_MODEL, use_gpu=True)
        spent["sparse"] += time.perf_counter() - started
        fallbacks += result.fallback_count
    executor.close()  # the sync's end
    spent["sparse_fallback_chunks"] = fallbacks
    sizes = executor.batcher.sizes()
    spent["dense_batch"] = sizes.get(encoder.name, args.dense_batch)
    spent["sparse_batch"] = sizes.get(SPARSE_MODEL, 64)
    return spent


def gib(value: int) -> str:
    return f"{value / GIB:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=20_000, help="chunks to encode (20000)")
    parser.add_argument("--window", type=int, default=256, help="chunks per sync window (256)")
    parser.add_argument("--dense-batch", type=int, default=32, help="MiniLM batch size (32)")
    parser.add_argument("--hard-cap-gb", type=float, default=12.0, help="gpu.vram_hard_cap_gb")
    parser.add_argument("--soft-limit-gb", type=float, default=10.0, help="gpu.vram_soft_limit_gb")
    parser.add_argument("--min-batch", type=int, default=4, help="gpu.min_batch_size (4)")
    parser.add_argument(
        "--idle-release-s", type=float, default=2.0, help="gpu.idle_release_s (2; 0: per stage)"
    )
    parser.add_argument("--corpus", type=Path, help="JSONL/BEIR corpus (default: the bundled one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    chunks = synthesise(load_texts(args.corpus), args.chunks)
    devices = NvmlProbe().devices()
    device = "cuda:0" if torch.cuda.is_available() and devices else None
    mean = sum(map(len, chunks)) / len(chunks)
    print(f"bench/gpu.py: {len(chunks)} chunks (mean {mean:.0f} chars), window {args.window}")
    if device is None:
        print("no GPU found: both sides run on the CPU (a smoke run; figures are not GPU ones)")
    else:
        name = torch.cuda.get_device_name(device)
        total = torch.cuda.get_device_properties(device).total_memory
        print(f"device {device}: {name}, {gib(total)}; NVML sees {len(devices)} GPU(s)")
    print(
        f"caps: hard {args.hard_cap_gb:g} GiB, soft {args.soft_limit_gb:g} GiB, "
        f"min batch {args.min_batch}; MiniLM batch {args.dense_batch}, BM42 batch 64; "
        f"idle release {args.idle_release_s:g} s"
    )

    vram = Vram(device)
    vram.reset()
    ref = reference(chunks, args, device or "cpu")
    ref_peak = vram.peaks()

    # The reference's models would otherwise sit in VRAM during our run.
    import gc

    gc.collect()
    vram.reset()
    telemetry = CountingTelemetry()
    with tempfile.TemporaryDirectory() as state:
        got = ours(chunks, args, telemetry, Path(state))
    our_peak = vram.peaks()

    n = len(chunks)
    print()
    print(f"{'stage':<18}{'reference chunks/s':>20}{'ours chunks/s':>16}{'ours/ref':>10}")
    rows = [
        ("dense MiniLM", ref["dense"], got["dense"]),
        ("sparse BM42", ref["sparse"], got["sparse"]),
        ("dense + sparse", ref["dense"] + ref["sparse"], got["dense"] + got["sparse"]),
    ]
    for label, ref_s, our_s in rows:
        print(f"{label:<18}{n / ref_s:>20.1f}{n / our_s:>16.1f}{ref_s / our_s:>10.2f}")
    print()
    if ref_peak is None or our_peak is None:
        print("peak VRAM: n/a (no GPU)")
    else:
        cap = int(args.hard_cap_gb * GIB)
        within = "within" if our_peak[1] <= cap else "OVER"
        print(f"peak VRAM reference: allocated {gib(ref_peak[0])}, reserved {gib(ref_peak[1])}")
        print(
            f"peak VRAM ours:      allocated {gib(our_peak[0])}, reserved {gib(our_peak[1])} "
            f"({within} the {args.hard_cap_gb:g} GiB hard cap; soft limit {args.soft_limit_gb:g})"
        )
    counts = telemetry.counts
    print(
        "decisions: "
        f"leases {counts['gpu_lease_acquired']} (held {telemetry.held_ms / 1000:.2f} s), "
        f"OOM {counts['gpu_oom']}, "
        f"soft limit {counts['gpu_soft_limit_exceeded']}, "
        f"batch-size changes {counts['batch_size_changed']}, "
        f"to CPU {counts['fallback to cpu']}, to metadata {counts['fallback to metadata']}"
    )
    print(
        f"batch sizes at the end: MiniLM {got['dense_batch']:.0f}, BM42 {got['sparse_batch']:.0f}; "
        f"BM42 chunks that fell back: {got['sparse_fallback_chunks']:.0f}"
    )


if __name__ == "__main__":
    main()

"""What recording a run costs: a bare sync vs the same sync recorded and traced.

Reference: ``build_syncer(..., record=False)`` run bare (no run record, no progress file, no-op
telemetry). Ours: ``build_syncer(..., record=True)``, the run recorded as ``connector sync``
records it (runs collection record at start, on progress and at the end; ``progress.json`` about
twice a second; manifest file), with OpenTelemetry SDK providers recording every span and metric
in memory.

Both sync the same corpus into a fresh embedded Qdrant each time, with real BM25 and, by default,
a cheap hashed dense encoder (the shipped ``connector.dense_plugins.RateEncoder`` at no set
rate) so that the recording overhead is not hidden behind model time (``--dense minilm`` uses the
real all-MiniLM-L6-v2).

    python bench/recording_overhead.py [--chunks 3000] [--repeat 3] [--dense fake|minilm]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from qdrant_client import QdrantClient

from connector.chunks import ChunkRecord
from connector.dense_plugins import RateEncoder
from connector.settings import load_settings
from connector.telemetry import Telemetry
from connector.wiring import build_syncer

CORPUS = Path(__file__).resolve().parents[1] / "connector" / "data" / "example_corpus.jsonl"


class Chunks:
    """``count`` chunks cycling over the example corpus, each with its own id and text."""

    def __init__(self, count: int) -> None:
        self.texts = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines()]
        self.count = count
        self.name = "bench://corpus"
        self.total_bytes = sum(len(self.texts[i % len(self.texts)]) + 8 for i in range(count))
        self.bytes_read = 0

    def __iter__(self) -> Iterator[ChunkRecord]:
        self.bytes_read = 0
        for i in range(self.count):
            text = f"{self.texts[i % len(self.texts)]} [{i}]"
            self.bytes_read += len(text) + 8
            yield ChunkRecord(text=text, metadata={"n": i}, chunk_id=str(i), location=str(i))


def dense_encoder(kind: str) -> object:
    if kind == "fake":
        # The shipped plug-in at no set rate: hashed vectors, nearly free.
        return RateEncoder(dim=64)
    from connector.dense import load_dense_encoders
    from connector.settings import DenseModelConfig

    return load_dense_encoders([DenseModelConfig(model="all-MiniLM-L6-v2")])[0]


def one_run(count: int, dense: object, recorded: bool) -> float:
    """Seconds for one sync of ``count`` chunks into a fresh embedded Qdrant, wired by
    ``build_syncer`` as ``connector sync`` is: recorded and traced, or neither."""
    with tempfile.TemporaryDirectory() as tmp:
        telemetry = Telemetry()  # the global providers: no-op
        if recorded:
            tracer_provider = TracerProvider()
            tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
            telemetry = Telemetry(
                tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])
            )
        settings = load_settings(None, {"state_dir": f"{tmp}/state"})
        with build_syncer(
            settings,
            source=Chunks(count),
            dense=[dense],  # type: ignore[list-item]
            client=QdrantClient(path=f"{tmp}/qdrant"),
            telemetry=telemetry,
            holder="bench",
            record=recorded,
        ) as job:
            started = time.perf_counter()
            try:
                job.run()
            finally:
                elapsed = time.perf_counter() - started
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dense", choices=["fake", "minilm"], default="fake")
    args = parser.parse_args()
    dense = dense_encoder(args.dense)
    one_run(64, dense, recorded=True)  # warm-up: model load, imports, stemmer tables
    bare: list[float] = []
    recorded: list[float] = []
    for _ in range(args.repeat):  # interleaved, so that drift hits both alike
        bare.append(one_run(args.chunks, dense, recorded=False))
        recorded.append(one_run(args.chunks, dense, recorded=True))
    ref, ours = statistics.median(bare), statistics.median(recorded)
    print(f"chunks: {args.chunks}, dense: {args.dense}, repeats: {args.repeat} (median)")
    print(f"reference  bare sync               {ref:7.2f} s  {args.chunks / ref:8.1f} chunks/s")
    print(f"ours       recorded + traced sync  {ours:7.2f} s  {args.chunks / ours:8.1f} chunks/s")
    print(f"ratio      ours / reference time   {ours / ref:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

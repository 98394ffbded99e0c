"""Does a sync keep a fast dense model fed? Overlapped stages against the same sync in turn.

    python bench/pipeline.py [DATASET] [--chunks N] [--rates 2000,8000,32000,0] [--words 100]
                             [--workers 1,2]

The shipped plug-in encoder ``connector.dense_plugins:RateEncoder`` takes 1/R s per chunk
asleep, with the GIL released, as a GPU kernel does
(R = 0: no wait, which shows what the CPU side alone reaches), stands in for the GPU. For each R,
a first sync of the same short chunks (about ``--words`` words, cut from DATASET) with BM25 on,
into the embedded engine, wired by ``connector.wiring.build_syncer``: once in turn (every stage
one after the other, what a sync did before its stages overlapped) and once overlapped. Printed
per run: sync chunks/s, sync / R, and each stage's busy share of the run's wall time (the stage
busy for most of it bounds the run). Each is run with every ``--workers`` count (``sync.workers``:
processes that run BM25), side by side.

DATASET is a BEIR folder or a corpus.jsonl (default ../shared/data/cranfield).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _corpus import DEFAULT_DATASET, read_docs, write_jsonl

from connector.dense import PluginEncoder
from connector.settings import DenseModelConfig

STAGES = ("read", "dense", "sparse", "build", "write")


def _rate_model(rate: float) -> DenseModelConfig:
    """The shipped plug-in that encodes at ``rate`` chunks/s (0: unbounded), configured as a
    user would; 16-d so that hashing costs little beside the rest of the sync."""
    options = {"dim": 16, "rate": rate or None, "batch_size": 32}
    return DenseModelConfig(
        encoder="connector.dense_plugins:RateEncoder", name="dense", options=options
    )


def short_chunks(docs: list[tuple[str, str]], count: int, words: int) -> Iterator[tuple[str, str]]:
    """``count`` chunks of ``words`` words, cut in turn from the documents' running text."""
    stream = [w for _, text in docs for w in text.split()]
    for n in range(count):
        start = (n * words) % max(1, len(stream) - words)
        yield f"c{n}", " ".join(stream[start : start + words]) + f" n{n}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--chunks", type=int, default=12_000)
    parser.add_argument("--words", type=int, default=100, help="words per chunk")
    parser.add_argument("--rates", default="2000,3000,8000,32000,0", help="R per run; 0: none")
    parser.add_argument("--engine", choices=["edge", "local"], default="edge")
    parser.add_argument("--workers", default="1", help="sync.workers per run, e.g. 1,2")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="connector-pipeline-bench-"))
    corpus = work / "short.jsonl"
    count = write_jsonl(short_chunks(read_docs(args.dataset), args.chunks, args.words), corpus)
    print(f"{count} chunks of ~{args.words} words, BM25 on, engine {args.engine}; work {work}")
    header = " ".join(f"{s:>6}" for s in STAGES)
    print(
        f"{'R':>8} {'mode':>10} {'workers':>7} {'chunks/s':>9} {'sync/R':>7}"
        "   busy share of wall time"
    )
    print(f"{'':>46}{header}")
    for rate in (float(r) for r in args.rates.split(",")):
        for overlap in (False, True):
            for workers in (int(w) for w in args.workers.split(",")):
                state = work / f"state-{rate:.0f}-{overlap}-{workers}"
                seconds, busy = _sync(corpus, state, rate, overlap, workers, args)
                speed = count / seconds
                shares = " ".join(
                    f"{busy[s] / seconds:>6.2f}" if busy.get(s) is not None else f"{'-':>6}"
                    for s in STAGES
                )
                mode = "overlapped" if overlap else "in turn"
                print(
                    f"{f'{rate:,.0f}' if rate else 'none':>8} {mode:>10} {workers:>7}"
                    f" {speed:>9,.0f} {f'{speed / rate:.2f}' if rate else '-':>7}   {shares}"
                )
    return 0


def _sync(
    corpus: Path, state: Path, rate: float, overlap: bool, workers: int, args: argparse.Namespace
) -> tuple[float, dict[str, float | None]]:
    from connector.settings import load_settings
    from connector.sources import open_source
    from connector.wiring import build_syncer

    settings = load_settings(
        None,
        {
            "state_dir": str(state),
            "qdrant": {"engine": args.engine, "collection": "bench"},
            "sparse": {"enabled": True},
            "sync": {"workers": workers},
        },
    )
    source = open_source(str(corpus), name="bench")
    with build_syncer(
        settings,
        source=source,
        dense=[PluginEncoder(_rate_model(rate))],
        holder="bench",
        record=False,
    ) as job:
        job.syncer.overlap = overlap
        started = time.perf_counter()
        record = job.run()
        seconds = time.perf_counter() - started
    performance = record.summary().performance
    assert performance is not None and record.counts.chunks_seen == args.chunks
    assert record.workers == workers
    return seconds, dict(performance.stage_busy_s)


if __name__ == "__main__":
    raise SystemExit(main())

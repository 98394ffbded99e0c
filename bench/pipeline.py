"""Does a sync keep a fast dense model fed? Its stages overlapped, in turn, and on more cores.

    python bench/pipeline.py [DATASET] [--corpus short|cranfield|both] [--chunks N]
                             [--rates 2000,3000,8000,32000,0] [--workers 1,2]
                             [--modes in-turn,overlapped] [--words 100] [--no-sparse]
    python bench/pipeline.py [DATASET] --device cuda|cpu [--corpus ...] [--chunks N]
                             [--workers N] [--dense-batch 256] [--precision fp32|fp16|bf16]

Without ``--device``, the shipped plug-in ``connector.dense_plugins:RateEncoder`` stands in for a
GPU: it takes 1/R s per chunk asleep, with the GIL released, as a GPU kernel does (R = 0: no wait,
which shows what the CPU side alone reaches). It runs with its own default batch size, 256 (one
sync window per call), since a GPU runs big batches. For each corpus, R, mode and ``--workers``
count (``sync.workers``: processes that share the CPU-bound work; default 1 up to the CPUs this
process may use), a first sync of the chunks with BM25 on into the embedded engine, wired by
``connector.wiring.build_syncer``: ``in-turn`` (every stage one after the other, what a sync did
before its stages overlapped) and ``overlapped``. Printed per run: sync chunks/s, sync / R, each
stage's busy share of the run's wall time (the stage busy for most of it bounds the run) and, for
more than one worker, its speed over the run of the same corpus, R and mode with one worker. The
last lines check the goals on 2 cores: overlapped sync >= 0.9 R at R = 3,000 (with the workers
a sync starts by default on this machine, and with the most workers run), and CPU-bound (R = 0)
throughput with 2 workers >= 1.4x that with 1.

With ``--device``, a model of all-MiniLM-L6-v2's shape with random weights (built here from its
config by ``bench/random_minilm.py``: its weights need not travel to a GPU host) against itself:
a raw loop of ``SentenceTransformer.encode`` over the chunks in sync windows with the model
resident on DEVICE, then an overlapped sync of the same chunks whose dense model is that same
in-memory model, which on ``cuda`` runs through the connector's leases and adaptive batches
(``gpu.enabled``). Printed: both chunks/s, their ratio (goal on a GPU: >= 0.8) and the sync's
busy shares. ``--device cpu`` runs the same on the CPU (a smoke run: use a small ``--chunks``).

Corpora: ``short``, chunks of about ``--words`` words cut from DATASET's running text;
``cranfield``, DATASET's own documents as chunks, cycled with small variations up to ``--chunks``.
DATASET is a BEIR folder or a corpus.jsonl (default ../shared/data/cranfield).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from _corpus import DEFAULT_DATASET, read_docs, short_chunks, varied, write_jsonl
from _dense import encode_windows

from connector.dense import PluginEncoder
from connector.pipeline._workers import auto_workers
from connector.settings import DenseModelConfig

if TYPE_CHECKING:
    from connector.dense import DenseEncoder

MODES = ("in-turn", "overlapped")
CORPORA = ("short", "cranfield")
# The goals on a 2-core machine (rate mode) and on a GPU (device mode).
GOAL_RATE, GOAL_SYNC_PER_R = 3000.0, 0.9
GOAL_WORKERS_SPEEDUP = 1.4
GOAL_SYNC_PER_RAW = 0.8


def cores() -> int:
    """CPUs this process may run on (its affinity, not the machine's count)."""
    counter = getattr(os, "process_cpu_count", None)  # Python 3.13+
    if counter is not None:
        return int(counter() or 1)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _rate_model(rate: float) -> DenseModelConfig:
    """The shipped plug-in that encodes at ``rate`` chunks/s (0: unbounded), configured as a
    user would; 16-d so that hashing costs little beside the rest of the sync."""
    return DenseModelConfig(
        encoder="connector.dense_plugins:RateEncoder",
        name="dense",
        options={"dim": 16, "rate": rate or None},
    )


def write_corpora(args: argparse.Namespace, work: Path) -> dict[str, tuple[Path, int]]:
    """The chosen corpora as JSONL files in ``work``: name -> (file, chunk count)."""
    docs = read_docs(args.dataset)
    corpora = {}
    for name in CORPORA if args.corpus == "both" else (args.corpus,):
        chunks = (
            short_chunks(docs, args.chunks, args.words)
            if name == "short"
            else varied(docs, args.chunks)
        )
        path = work / f"{name}.jsonl"
        corpora[name] = (path, write_jsonl(chunks, path))
    return corpora


@dataclass
class Run:
    """One timed sync."""

    seconds: float
    busy: dict[str, float | None]
    """Busy seconds per stage, as the run's manifest records them."""
    gpus: list[str]
    """GPUs its models ran on (none: all on the CPU)."""


def sync(
    corpus: Path,
    count: int | None,
    state: Path,
    dense: Sequence[DenseEncoder],
    args: argparse.Namespace,
    *,
    workers: int,
    overlap: bool = True,
    gpu: bool = False,
) -> Run:
    """A first sync of ``corpus`` (``count`` chunks: checked, unless ``None``) into a new
    embedded store under ``state``, as ``connector sync`` runs it (not recorded), timed from the
    collection's creation to the last write."""
    from connector.settings import load_settings
    from connector.sources import open_source
    from connector.wiring import build_syncer

    settings = load_settings(
        None,
        {
            "state_dir": str(state),
            "qdrant": {"engine": args.engine, "collection": "bench"},
            "sparse": {"enabled": args.sparse},
            "sync": {"workers": workers, "batch_size": args.window},
            "gpu": {"enabled": gpu},
        },
    )
    source = open_source(str(corpus), name="bench")
    with build_syncer(settings, source=source, dense=dense, holder="bench", record=False) as job:
        job.syncer.overlap = overlap
        started = time.perf_counter()
        record = job.run()
        seconds = time.perf_counter() - started
        gpus = sorted(job.executor.usage)
    performance = record.summary().performance
    assert performance is not None
    assert count is None or record.counts.chunks_seen == count
    assert record.workers == workers
    return Run(seconds, dict(performance.stage_busy_s), gpus)


def shares(run: Run) -> str:
    """Each stage's busy share of the run's wall time (``-``: the stage did not run)."""
    return " ".join(
        f"{busy / run.seconds:>6.2f}" if busy is not None else f"{'-':>6}"
        for busy in run.busy.values()
    )


def stage_header(run: Run, indent: int) -> str:
    return " " * indent + " ".join(f"{name:>6}" for name in run.busy)


def rate_bench(args: argparse.Namespace, corpora: dict[str, tuple[Path, int]], work: Path) -> None:
    """The rate-encoder table, then the goals."""
    rates = [float(r) for r in args.rates.split(",")]
    workers_counts = sorted({int(w) for w in args.workers.split(",")})
    speeds: dict[tuple[str, float, str, int], float] = {}
    head = (
        f"{'corpus':>9} {'R':>7} {'mode':>10} {'workers':>7} {'chunks/s':>9} {'sync/R':>7}"
        f" {'vs w1':>6}   busy share of wall time"
    )
    print(head)
    if workers_counts[-1] > 1:
        # Helper processes start from a fork server that imports their modules once per
        # process (a second or so, which `connector sync` pays once): started here, untimed.
        path, _ = next(iter(corpora.values()))
        sync(path, None, work / "warm-up", [PluginEncoder(_rate_model(0))], args, workers=2)
    header_printed = False
    for name, (path, count) in corpora.items():
        for rate in rates:
            for mode in args.modes:
                for workers in workers_counts:
                    state = work / f"state-{name}-{rate:.0f}-{mode}-{workers}"
                    dense = [PluginEncoder(_rate_model(rate))]
                    run = sync(
                        path, count, state, dense, args, workers=workers, overlap=mode != "in-turn"
                    )
                    if not header_printed:
                        print(stage_header(run, len(head) - len("busy share of wall time")))
                        header_printed = True
                    speed = speeds[name, rate, mode, workers] = count / run.seconds
                    one = speeds.get((name, rate, mode, 1))
                    versus = f"{speed / one:.2f}x" if workers != 1 and one else "-"
                    print(
                        f"{name:>9} {f'{rate:,.0f}' if rate else 'none':>7} {mode:>10}"
                        f" {workers:>7} {speed:>9,.0f} {f'{speed / rate:.2f}' if rate else '-':>7}"
                        f" {versus:>6}   {shares(run)}"
                    )
    print()
    default = auto_workers(None)
    for name in corpora:
        fed = [
            f"{speeds[key] / GOAL_RATE:.2f} with {w} workers"
            f"{' (the default here)' * (w == default)}"
            f": {_verdict(speeds[key] / GOAL_RATE, GOAL_SYNC_PER_R)}"
            for w in sorted({default, workers_counts[-1]})
            if (key := (name, GOAL_RATE, "overlapped", w)) in speeds
        ]
        fed_text = "; ".join(fed) or (
            "not measured (needs R 3000 in --rates, the overlapped mode and the default workers)"
        )
        print(f"goal {name}: overlapped sync/R at R = 3,000 >= {GOAL_SYNC_PER_R}: {fed_text}")
        one, two = (speeds.get((name, 0.0, "overlapped", w)) for w in (1, 2))
        cpu_text = (
            f"{two / one:.2f}x: {_verdict(two / one, GOAL_WORKERS_SPEEDUP)}"
            if one and two
            else "not measured (needs R 0 in --rates, workers 1 and 2, the overlapped mode)"
        )
        print(
            f"goal {name}: CPU-bound (R = 0) overlapped sync, 2 workers / 1 worker"
            f" >= {GOAL_WORKERS_SPEEDUP}x: {cpu_text}"
        )


def device_bench(
    args: argparse.Namespace, corpora: dict[str, tuple[Path, int]], work: Path
) -> None:
    """A raw encode loop of the MiniLM-shaped model against a sync with it, per corpus."""
    import torch
    from random_minilm import build

    from connector.dense import SentenceTransformerEncoder

    device = args.device
    on_gpu = device != "cpu"
    where = torch.cuda.get_device_name(device) if on_gpu else "the CPU"
    workers = max(int(w) for w in args.workers.split(","))
    folder = build(work / "minilm")
    print(
        f"all-MiniLM-L6-v2's shape, random weights, on {device} ({where}), {args.precision}; "
        f"dense batch {args.dense_batch}, window {args.window}; sync overlapped, "
        f"{workers} workers, BM25 {'on' if args.sparse else 'off'}, engine {args.engine}"
        + ("; GPU through leases and adaptive batches" if on_gpu else "")
    )
    head = (
        f"{'corpus':>9} {'chunks':>7} {'raw encode/s':>12} {'sync chunks/s':>13} {'sync/raw':>8}"
        f" {'sync dense on':>13}   busy share of wall time"
    )
    print(head)
    ratios = {}
    for name, (path, count) in corpora.items():
        texts = [json.loads(line)["text"] for line in path.open(encoding="utf-8")]
        config = DenseModelConfig(model=str(folder), name="dense", batch_size=args.dense_batch)
        encoder = SentenceTransformerEncoder(config, device="cpu", precision=args.precision)
        model = encoder.model  # loaded before either clock starts
        encoder.to(device)  # the raw loop keeps it resident on the device, in the same precision
        encode_windows(model, texts[: args.window], args.window, args.dense_batch)  # warm-up
        raw_s = encode_windows(model, texts, args.window, args.dense_batch)
        encoder.to("cpu")  # where a sync finds it: the sync leases the GPU and hydrates it
        state = work / f"state-{name}-{device.replace(':', '')}"
        run = sync(path, count, state, [encoder], args, workers=workers, overlap=True, gpu=on_gpu)
        if name == next(iter(corpora)):
            print(stage_header(run, len(head) - len("busy share of wall time")))
        ratios[name] = raw_s / run.seconds
        print(
            f"{name:>9} {count:>7} {count / raw_s:>12,.0f} {count / run.seconds:>13,.0f}"
            f" {ratios[name]:>8.2f} {','.join(run.gpus) or 'cpu':>13}   {shares(run)}"
        )
        if on_gpu and not run.gpus:
            print(
                "  the sync got no GPU lease and ran its dense model on the CPU: NVML"
                " (nvidia-ml-py) must see the GPU and no other process may hold it"
            )
    print()
    results = ", ".join(
        f"{name} {ratio:.2f}: {_verdict(ratio, GOAL_SYNC_PER_RAW)}"
        for name, ratio in ratios.items()
    )
    print(
        f"goal: sync >= {GOAL_SYNC_PER_RAW}x a raw SentenceTransformer.encode loop on the same GPU:"
        f" {results}" + ("" if on_gpu else " (on the CPU: a smoke run, not the goal's figure)")
    )


def no_cuda(device: str) -> str | None:
    """Why ``--device`` cannot run here, if it cannot: said plainly rather than failing later."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        return (
            f"--device {device}: torch {torch.__version__} sees no CUDA device here, and this "
            "comparison needs one; --device cpu runs it on the CPU (a smoke run)"
        )
    return None


def _verdict(value: float, goal: float) -> str:
    return "met" if value >= goal else "NOT met"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--corpus", choices=[*CORPORA, "both"], default="both")
    parser.add_argument("--chunks", type=int, default=12_000, help="chunks per corpus")
    parser.add_argument("--words", type=int, default=100, help="words per short chunk")
    parser.add_argument("--rates", default="2000,3000,8000,32000,0", help="R per run; 0: none")
    parser.add_argument(
        "--modes", default=",".join(MODES), help="in-turn, overlapped or both (comma-separated)"
    )
    parser.add_argument(
        "--workers",
        help=f"sync.workers per run, e.g. 1,2 (default 1..{cores()}; with --device: {cores()})",
    )
    parser.add_argument("--window", type=int, default=256, help="sync.batch_size (256)")
    parser.add_argument("--engine", choices=["edge", "local"], default="edge")
    parser.add_argument("--sparse", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--device", help="cpu or cuda[:N]: the MiniLM-shaped model, raw vs sync")
    parser.add_argument("--dense-batch", type=int, default=256, help="with --device (256)")
    parser.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32")
    args = parser.parse_args()
    args.modes = [m.strip() for m in args.modes.split(",")]
    if set(args.modes) - set(MODES):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    if args.workers is None:
        args.workers = str(cores()) if args.device else ",".join(map(str, range(1, cores() + 1)))

    problem = no_cuda(args.device) if args.device else None
    if problem:
        print(problem)
        return 2
    # Corpora, stores and the model go with the folder: a run with many workers counts writes
    # many stores.
    with tempfile.TemporaryDirectory(prefix="connector-pipeline-bench-") as folder:
        work = Path(folder)
        corpora = write_corpora(args, work)
        sizes = ", ".join(f"{name} {count}" for name, (_, count) in corpora.items())
        print(
            f"bench/pipeline.py: chunks {sizes} (short: ~{args.words} words), "
            f"BM25 {'on' if args.sparse else 'off'}, engine {args.engine}"
        )
        if args.device:
            device_bench(args, corpora, work)
        else:
            rate_bench(args, corpora, work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

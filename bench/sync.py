"""End-to-end sync speed, re-sync speed and memory of the connector.

    python bench/sync.py [DATASET] [--chunks N] [--engine edge|local] [--rss 10000,100000]

1. Dense (all-MiniLM-L6-v2) + BM25 sync of N chunks into the embedded Qdrant, against a raw loop
   of ``SentenceTransformer.encode`` over the same chunks in the same windows (models loaded
   before either clock starts); chunks/s of both and the ratio.
2. Re-sync of the unchanged corpus (same process, models loaded): its time, and how many times
   faster than the first sync it is.
3. BM25-only sync into each embedded engine (qdrant-client's local mode, and Qdrant's engine
   in-process): chunks/s, to show whether the store caps the sync.
4. Peak RSS of a BM25-only sync at each --rss size, each in a fresh process: into the embedded
   engine ("edge", whose index lives in the process), and into a store outside the process (a
   stand-in client that acknowledges writes and keeps nothing, as a Qdrant server would look
   from the connector's side), which shows the connector's own memory.

Every sync in the benchmark's own processes is wired by ``connector.wiring.build_syncer`` and run
as ``connector sync`` runs it (the collection prepared at the latest schema first), without a run
record; the fresh-process re-sync of step 2 is ``connector sync`` itself.

DATASET is a BEIR folder or a corpus.jsonl (default ../shared/data/cranfield); it is cycled with
small variations (shuffled words, a copy number) to reach the sizes asked for.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _corpus import DEFAULT_DATASET, read_docs, varied, write_jsonl
from _dense import encode_windows
from _memory import peak_rss_mb

HERE = Path(__file__).resolve()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--chunks", type=int, default=1400, help="chunks of the dense sync")
    parser.add_argument("--rounds", type=int, default=2, help="raw/sync rounds (best counts)")
    parser.add_argument("--engine", choices=["edge", "local"], default="edge")
    parser.add_argument("--device", default="cpu", help="dense model device (cpu, cuda)")
    parser.add_argument("--bm25-chunks", type=int, default=3000, help="chunks of the store test")
    parser.add_argument("--rss", default="10000,100000", help="sizes of the RSS runs ('' skips)")
    parser.add_argument(
        "--child", nargs=3, metavar=("CORPUS", "STATE", "ENGINE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        return _child(*args.child)

    docs = read_docs(args.dataset)
    work = Path(tempfile.mkdtemp(prefix="connector-sync-bench-"))
    print(f"corpus: {args.dataset} ({len(docs)} documents), work folder {work}\n")
    _dense_sync(docs, work, args)
    _bm25_engines(docs, work, args.bm25_chunks)
    sizes = [int(s) for s in args.rss.split(",") if s.strip()]
    if sizes:
        _rss(docs, work, sizes)
    return 0


def _settings(state: Path, engine: str, device: str = "cpu"):
    from connector.settings import load_settings

    return load_settings(
        None,
        {
            "state_dir": str(state),
            "qdrant": {"engine": engine, "collection": "bench"},
            # A GPU is used through the connector's leases (gpu.enabled), as a sync would.
            "gpu": {"enabled": device != "cpu"},
        },
    )


def _dense_sync(docs: list[tuple[str, str]], work: Path, args: argparse.Namespace) -> None:
    from connector.sources import open_source
    from connector.wiring import build_syncer, dense_encoders

    corpus = work / "dense.jsonl"
    count = write_jsonl(varied(docs, args.chunks), corpus)
    settings = _settings(work / "dense-state", args.engine, args.device)
    dense = dense_encoders(settings)
    model = dense[0].model  # loaded before any clock starts
    window = settings.sync.batch_size
    texts = [json.loads(line)["text"] for line in corpus.open(encoding="utf-8")]
    model.encode(texts[:64], batch_size=32, show_progress_bar=False)  # warm-up, untimed
    source = open_source(str(corpus), name="bench")
    device = args.device
    print(f"1. dense + BM25 sync, {count} chunks, MiniLM on {device}, engine {args.engine}")

    raw_s, sync_s = [], []
    for round_ in range(1, args.rounds + 1):
        model.to(device)  # the raw loop keeps its model resident on the device
        raw_s.append(encode_windows(model, texts, window, settings.dense.models[0].batch_size))
        model.to("cpu")
        # Each round syncs into a new collection: a first sync every time, wired and run as
        # `connector sync` does (the collection created at the latest schema), not recorded.
        with build_syncer(
            settings,
            source=source,
            dense=dense,
            collection=f"round{round_}",
            holder="bench",
            record=False,
        ) as job:
            started = time.perf_counter()
            first = job.run()
            sync_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            again = job.run()  # the same job: nothing changed since
            again_s = time.perf_counter() - started
        print(
            f"   round {round_}: raw encode {count / raw_s[-1]:6.1f} chunks/s, "
            f"sync {count / sync_s[-1]:6.1f} chunks/s ({first.writes.upserted} upserted)"
        )
    raw, ours = count / min(raw_s), count / min(sync_s)
    print(f"   best of {args.rounds}: raw SentenceTransformer.encode loop {raw:>7.1f} chunks/s")
    print(f"   best of {args.rounds}: connector sync                      {ours:>7.1f} chunks/s")
    print(f"   ratio (sync / raw encode): {ours / raw:.2f}x\n")
    print(
        f"2. re-sync of the unchanged corpus: {again_s:.2f}s ({again.counts.skipped_unchanged} "
        f"unchanged, {again.counts.encoded} encoded)\n"
        f"   vs {sync_s[-1]:.1f}s for the first sync: {sync_s[-1] / again_s:.0f}x faster"
    )
    # The same re-sync as a fresh `connector sync` process: start-up, imports and model load too.
    env = os.environ | {
        "CONNECTOR_STATE_DIR": str(work / "dense-state"),
        "CONNECTOR_QDRANT__ENGINE": args.engine,
        "CONNECTOR_GPU__ENABLED": "true" if args.device != "cpu" else "false",
    }
    command = [sys.executable, "-m", "connector", "sync", "--source", str(corpus)]
    command += ["--source-name", "bench", "--collection", f"round{args.rounds}", "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the re-sync process failed: {done.stderr.strip()}")
    wall = time.perf_counter() - started
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"   as a fresh `connector sync` process: {wall:.1f}s wall ({report['encoded']} encoded; "
        f"process start-up and imports included): {sync_s[-1] / wall:.0f}x faster\n"
    )


def _bm25_engines(docs: list[tuple[str, str]], work: Path, count: int) -> None:
    corpus = work / "bm25.jsonl"
    write_jsonl(varied(docs, count), corpus)
    print(f"3. BM25-only sync, {count} chunks, by embedded engine (fresh process each)")
    for engine in ("local", "edge"):
        result = _run_child(corpus, work / f"bm25-{engine}", engine)
        print(
            f"   {engine:5} {result['chunks'] / result['seconds']:>9,.0f} chunks/s"
            f"   peak RSS {result['peak_rss_mb']:,.0f} MB"
        )
    print()


def _rss(docs: list[tuple[str, str]], work: Path, sizes: list[int]) -> None:
    print("4. peak RSS of a BM25-only sync (fresh process each)")
    peaks: dict[str, list[float]] = {"edge": [], "outside": []}
    for size in sizes:
        corpus = work / f"rss-{size}.jsonl"
        write_jsonl(varied(docs, size), corpus)
        for store in peaks:
            result = _run_child(corpus, work / f"rss-{size}-{store}", store)
            peaks[store].append(result["peak_rss_mb"])
            rate = result["chunks"] / result["seconds"]
            print(
                f"   {size:>8,} chunks, store {store:7}: peak RSS {peaks[store][-1]:>6,.0f} MB"
                f" ({rate:,.0f} chunks/s)"
            )
        corpus.unlink()
    if len(sizes) > 1:
        for store, values in peaks.items():
            print(
                f"   ratio {sizes[-1]:,} / {sizes[0]:,} chunks, store {store:7}: "
                f"{values[-1] / values[0]:.2f}x"
            )


def _run_child(corpus: Path, state: Path, engine: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(HERE), "--child", str(corpus), str(state), engine],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(corpus: str, state: str, engine: str) -> int:
    """A BM25-only sync in this fresh process; prints chunks, seconds and peak RSS as JSON."""
    from connector.sources import open_source
    from connector.wiring import build_syncer

    settings = _settings(Path(state), "edge" if engine == "outside" else engine)
    client = _OutsideStore() if engine == "outside" else None
    source = open_source(corpus, name="bench")
    with build_syncer(
        settings,
        source=source,
        dense=[],
        client=client,  # type: ignore[arg-type]
        holder="bench",
        record=False,
    ) as job:
        started = time.perf_counter()
        report = job.run()
        seconds = time.perf_counter() - started
    chunks = report.writes.upserted
    print(json.dumps({"chunks": chunks, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}))
    return 0


class _OutsideStore:
    """Stands for a store in another process: acknowledges every write and keeps nothing."""

    def collection_exists(self, name: str) -> bool:
        return False

    def get_aliases(self) -> object:
        from qdrant_client import models

        return models.CollectionsAliasesResponse(aliases=[])

    def get_collection(self, name: str) -> object:
        """A collection with no vectors and no metadata: the first sync adds what it needs."""
        from qdrant_client import models

        params = models.CollectionParams(vectors={}, sparse_vectors={})
        config = models.CollectionConfig.model_construct(params=params, metadata=None)
        return models.CollectionInfo.model_construct(config=config, payload_schema={})

    def create_collection(self, *args, **kwargs) -> bool:
        return True

    def update_collection(self, *args, **kwargs) -> bool:
        return True

    def update_collection_aliases(self, *args, **kwargs) -> bool:
        return True

    def create_vector_name(self, *args, **kwargs) -> None:
        return None

    def create_payload_index(self, *args, **kwargs) -> None:
        return None

    def retrieve(self, *args, **kwargs) -> list:
        return []

    def upsert(self, *args, **kwargs) -> None:
        return None

    def scroll(self, *args, **kwargs) -> tuple[list, None]:
        return [], None

    def close(self) -> None:
        return None


if __name__ == "__main__":
    sys.exit(main())

"""Does the embedded default serve a million chunks? Sync speed, memory, disk and search by size.

    python bench/scale.py [DATASET] [--sizes 10000,100000,1000000] [--engine edge|local]
                          [--local-sizes 10000] [--queries 200] [--words 100]
                          [--set qdrant.KEY=VALUE ...] [--work DIR] [--keep]

For each size, chunks of about ``--words`` words cut from DATASET's running text (each with a
unique id and a unique ending) are written once to a JSONL file, streamed, in the work folder.
A first sync of them runs in a fresh process into a new embedded store of ``--engine`` (and of
the local engine at ``--local-sizes``, side by side), wired by ``connector.wiring.build_syncer``
as ``connector sync`` runs it (not recorded), with BM25 on and dense vectors from the shipped
plug-in ``connector.dense_plugins:RateEncoder`` (384-d, no rate cap: hashing only, so the store
is what is measured). ``sync.workers`` is left at its default (cores - 1, so 1 on a 2-core
machine: no helper process).

Printed per size and engine:

- sync chunks/s: chunks over the time from the run's start until the store is closed (a flush
  or index build at the end counts);
- peak RSS of the sync process (VmHWM), plus the peaks of its helper processes (writer, sparse
  workers, the fork server they start from) when ``sync.workers`` > 1 starts any, added up
  (``+Np``: N helper processes; each read every 0.2 s, so a floor for each);
- on-disk size of the state folder (allocated blocks, as ``du``);
- hybrid search (dense + BM25 fused, as ``connector search --mode hybrid``) in a second fresh
  process, through ``connector.wiring.build_searcher``: the store's open time, p50/p99/max of
  ``--queries`` query calls (DATASET's queries.jsonl texts, cycled; chunk texts if it has none)
  timed one by one after one warm-up query, that process's peak RSS, and a check that the index
  finds: 50 chunks' own texts as queries, how many come back first.

Then the issue's goals with verdicts: at 1,000,000 chunks hybrid p50 <= 20 ms, p99 <= 100 ms
and sync peak RSS <= 4 GB; at 100,000 chunks p50 <= 10 ms.

``--set KEY=VALUE`` (repeatable) overrides any setting by its dotted key, e.g.
``--set qdrant.upsert_batch_size=256``; VALUE is read as a TOML value (``true``, ``16``,
``"x"``), else taken as a string. Each store and each size's JSONL file is deleted once
measured unless ``--keep`` (then the work folder stays, and its path is printed).
DATASET is a BEIR folder or a corpus.jsonl (default ../shared/data/cranfield).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _corpus import DEFAULT_DATASET, corpus_file, read_docs, short_chunks, write_jsonl
from _memory import HelperPeaks, peak_rss_mb

HERE = Path(__file__).resolve()
DENSE: dict[str, Any] = {
    "encoder": "connector.dense_plugins:RateEncoder",
    "name": "dense",
    "options": {"dim": 384, "rate": None},
}
PROBES = 50
"""Chunks whose own text is searched for, to check that the index finds them."""
# The goals: (size, figure, most allowed).
GOALS = (
    (1_000_000, "p50_ms", 20.0),
    (1_000_000, "p99_ms", 100.0),
    (1_000_000, "sync_peak_mb", 4096.0),
    (100_000, "p50_ms", 10.0),
)
FIGURES = {"p50_ms": "hybrid p50", "p99_ms": "hybrid p99", "sync_peak_mb": "sync peak RSS"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="chunks per store")
    parser.add_argument("--engine", choices=["edge", "local"], default="edge")
    parser.add_argument(
        "--local-sizes", default="10000", help="sizes also synced into the local engine ('' none)"
    )
    parser.add_argument("--queries", type=int, default=200, help="timed hybrid queries (200)")
    parser.add_argument("--words", type=int, default=100, help="words per chunk (100)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting by its dotted key, e.g. qdrant.upsert_batch_size=256 (repeatable)",
    )
    parser.add_argument("--work", type=Path, help="folder for the work folder (default: tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(json.load(sys.stdin))

    try:
        overrides = parse_sets(args.sets)
    except ValueError as exc:
        parser.error(str(exc))
    _check_settings(overrides)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    local_sizes = {int(s) for s in args.local_sizes.split(",") if s.strip()}
    docs = read_docs(args.dataset)
    queries = read_queries(args.dataset, args.queries, docs)
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="connector-scale-bench-", dir=args.work))
    free = shutil.disk_usage(work).free
    print(
        f"bench/scale.py: chunks of ~{args.words} words from {args.dataset}, BM25 on, dense "
        f"{DENSE['options']['dim']}-d from {DENSE['encoder']} (no rate cap), sync.workers "
        f"default; {len(queries)} hybrid queries; settings {overrides or 'defaults'}; work folder "
        f"{work} ({free / 1e9:,.1f} GB free)"
    )
    header = (
        f"{'chunks':>9} {'engine':>6} {'workers':>7} {'sync/s':>7} {'sync s':>7}"
        f" {'peak RSS':>9} {'disk':>9} {'open s':>6} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'max ms':>7} {'found':>6} {'search RSS':>10}"
    )
    print(header, flush=True)
    results: dict[tuple[int, str], dict[str, Any]] = {}
    try:
        for size in sizes:
            engines = [args.engine]
            if size in local_sizes and args.engine != "local":
                engines.append("local")
            corpus = work / f"chunks-{size}.jsonl"
            probes = write_corpus(docs, size, args.words, corpus)
            for engine in engines:
                state = work / f"{engine}-{size}"
                spec = {"state": str(state), "engine": engine, "overrides": overrides}
                synced = _run_child({**spec, "task": "sync", "corpus": str(corpus)})
                if synced["chunks"] != size:
                    raise SystemExit(f"bench: synced {synced['chunks']} chunks of {size}")
                synced["disk_bytes"] = disk_bytes(state)
                found = _run_child({**spec, "task": "search", "queries": queries, "probes": probes})
                results[size, engine] = row = {**synced, **found}
                print(_row(size, engine, row), flush=True)
                if not args.keep:
                    shutil.rmtree(state)
            if not args.keep:
                corpus.unlink()
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    for line in goal_lines(results, args.engine):
        print(line)
    return 0


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["qdrant.hnsw_m=0", ...]`` as nested overrides, ``{"qdrant": {"hnsw_m": 0}}``.

    Raises:
        ValueError: An item is not ``KEY=VALUE`` with a dotted key.
    """
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. qdrant.upsert_batch_size=8")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word: a string
        table = overrides
        for part in parts[:-1]:
            table = table.setdefault(part, {})
        table[parts[-1]] = value
    return overrides


def settings_for(state: Path, engine: str, overrides: dict[str, Any]) -> Any:
    """The settings of one store: the bench's own, then ``overrides`` on top."""
    from connector.settings import load_settings

    values: dict[str, Any] = {
        "state_dir": str(state),
        "qdrant": {"engine": engine, "collection": "bench"},
        "dense": {"models": [DENSE]},
    }
    return load_settings(None, _merge(values, overrides))


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _check_settings(overrides: dict[str, Any]) -> None:
    """A bad ``--set`` fails here, before any corpus is written."""
    from connector.errors import ConfigError

    try:
        settings_for(Path("unused"), "edge", overrides)
    except ConfigError as exc:
        raise SystemExit(f"bench: --set: {exc}") from None


def read_queries(dataset: Path, count: int, docs: list[tuple[str, str]]) -> list[str]:
    """``count`` query texts: DATASET's queries.jsonl cycled, else its documents' texts."""
    path = corpus_file(dataset).parent / "queries.jsonl"
    texts: list[str] = []
    if path.is_file():
        with path.open(encoding="utf-8") as handle:
            texts = [json.loads(line)["text"] for line in handle if line.strip()]
    texts = texts or [text for _, text in docs]
    return [texts[n % len(texts)] for n in range(count)]


def write_corpus(docs: list[tuple[str, str]], size: int, words: int, path: Path) -> list[list[str]]:
    """``size`` short chunks written to ``path`` as they are made; returns :data:`PROBES` of
    them, ``[id, text]``, spread over the corpus."""
    every = max(1, size // PROBES)
    probes: list[list[str]] = []

    def keep(chunks: Iterator[tuple[str, str]]) -> Iterator[tuple[str, str]]:
        for n, (chunk_id, text) in enumerate(chunks):
            if n % every == 0 and len(probes) < PROBES:
                probes.append([chunk_id, text])
            yield chunk_id, text

    write_jsonl(keep(short_chunks(docs, size, words)), path)
    return probes


def disk_bytes(folder: Path) -> int:
    """Bytes allocated to the files under ``folder`` (as ``du``: sparse files count as used)."""
    return sum(
        (root_path / name).lstat().st_blocks * 512
        for root, _, files in os.walk(folder)
        for root_path in (Path(root),)
        for name in files
    )


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One task in a fresh process (its own peak RSS); its JSON answer. The task goes on
    stdin (its queries and probes could outgrow a command-line argument)."""
    done = subprocess.run(
        [sys.executable, str(HERE), "--child"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: the {spec['task']} process failed:\n{done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _child(spec: dict[str, Any]) -> int:
    settings = settings_for(Path(spec["state"]), spec["engine"], spec["overrides"])
    task = _sync if spec["task"] == "sync" else _search
    print(json.dumps(task(settings, spec)))
    return 0


def _sync(settings: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """A first sync of the corpus, timed from its start until the store is closed."""
    from connector.sources import open_source
    from connector.wiring import build_syncer

    source = open_source(spec["corpus"], name="bench")
    with HelperPeaks() as helpers:
        started = time.perf_counter()
        with build_syncer(settings, source=source, holder="bench", record=False) as job:
            record = job.run()
        seconds = time.perf_counter() - started
    own = peak_rss_mb()
    assert own is not None
    return {
        "chunks": record.counts.chunks_seen,
        "seconds": seconds,
        "workers": record.workers,
        "sync_peak_mb": own + helpers.total_mb(),
        "helpers": len(helpers.peaks),
    }


def _search(settings: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """Hybrid queries in one process: each call timed alone, after one warm-up."""
    from connector.wiring import build_searcher

    queries: list[str] = spec["queries"]
    started = time.perf_counter()
    with build_searcher(settings) as searcher:
        if searcher.sparse is None or not searcher.dense:
            raise SystemExit("bench: the collection lacks a dense or a sparse vector")
        searcher.search(queries[0], mode="hybrid")
        open_s = time.perf_counter() - started
        times = []
        for query in queries:
            begun = time.perf_counter()
            searcher.search(query, mode="hybrid")
            times.append((time.perf_counter() - begun) * 1000)
        found = sum(
            hits[0].chunk_id == chunk_id
            for chunk_id, text in spec["probes"]
            if (hits := searcher.search(text, mode="hybrid", limit=1))
        )
    return {
        "open_s": open_s,
        "p50_ms": statistics.median(times),
        "p99_ms": statistics.quantiles(times, n=100, method="inclusive")[98],
        "max_ms": max(times),
        "found": f"{found}/{len(spec['probes'])}",
        "search_peak_mb": peak_rss_mb(),
    }


def _row(size: int, engine: str, r: dict[str, Any]) -> str:
    peak = _mb(r["sync_peak_mb"]) + (f"+{r['helpers']}p" if r["helpers"] else "")
    return (
        f"{size:>9,} {engine:>6} {r['workers']:>7} {size / r['seconds']:>7,.0f}"
        f" {r['seconds']:>7.1f} {peak:>9} {_mb(r['disk_bytes'] / 2**20):>9}"
        f" {r['open_s']:>6.2f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['max_ms']:>7.1f}"
        f" {r['found']:>6} {_mb(r['search_peak_mb']):>10}"
    )


def _mb(mb: float) -> str:
    return f"{mb / 1024:.2f} GB" if mb >= 1024 else f"{mb:,.0f} MB"


def goal_lines(results: dict[tuple[int, str], dict[str, Any]], engine: str) -> Iterator[str]:
    """Each goal of the issue: the figure measured on ``engine`` and whether it is met."""
    for size, figure, most in GOALS:
        goal = (
            f"goal at {size:,} chunks ({engine}): {FIGURES[figure]} <= {_goal_value(figure, most)}"
        )
        row = results.get((size, engine))
        if row is None:
            yield f"{goal}: not measured (add {size} to --sizes)"
            continue
        value = row[figure]
        shown = _mb(value) if figure == "sync_peak_mb" else f"{value:.1f} ms"
        yield f"{goal}: {shown}: {'met' if value <= most else 'NOT met'}"


def _goal_value(figure: str, most: float) -> str:
    return _mb(most) if figure == "sync_peak_mb" else f"{most:.0f} ms"


if __name__ == "__main__":
    raise SystemExit(main())

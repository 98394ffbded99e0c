"""What `connector search` costs as a fresh process, before and including its first result.

    python bench/search_startup.py [--chunks 100] [--repeats 3] [--cases a,b,c] [--engine edge]
                                   [--against DIR]

Three cases, each over its own collection of the first ``--chunks`` documents of the bundled
example corpus (synced first, untimed):

- ``a``: a BM25-only query (``--mode sparse``) of a collection whose dense model is a plug-in;
- ``b``: a hybrid query of that collection (dense from ``connector.dense_plugins:RateEncoder``);
- ``c``: a hybrid query of a collection of the default model, all-MiniLM-L6-v2 (bundled).

For each, ``--repeats`` runs of three kinds, medians printed:

- the command itself, ``python -m connector search ...``: wall time to its first result line on
  stdout, and to its exit;
- the same steps in this file's child mode, timed one by one: interpreter start (spawn to the
  child's first line), imports (the CLI and the modules a search imports up front), settings
  (read, telemetry set up), store (the embedded engine opened and the collection loaded, which
  the first query would do otherwise), models (dense encoders built, a sentence-transformers
  model loaded when the query needs it, the sparse model), query (the first search) and a
  second, warm query for reference;
- once, ``python -X importtime -m connector search ...``: the sum of all its imports (lazy ones
  included) over its wall time, the imports' share, and the cumulative import time of the heavy
  packages, or ``-`` for each one the case never imports.

With ``--against DIR``, another checkout of the connector (``git worktree add DIR c47bff9``, say)
is measured the same way over the same collections, each case right after this checkout's, and
printed below it as ``a (ref)``: a before/after under the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from connector.search import Mode

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "connector" / "data" / "example_corpus.jsonl"
QUERY = "wing in a propeller slipstream"
WARM_QUERY = "heat transfer of a slab"
# Packages whose import is heavy, in the order printed; a search imports only what it needs.
HEAVY = (
    "torch",
    "sentence_transformers",
    "transformers",
    "qdrant_client",
    "fastembed",
    "opentelemetry.sdk",
    "qdrant_edge",
)
PHASES = ("interpreter", "imports", "settings", "store", "models", "query")
PLUGIN = (
    '[{ encoder = "connector.dense_plugins:RateEncoder", name = "vec", options = { dim = 384 } }]'
)
CASES = {
    "a": ("BM25 only (--mode sparse)", "plugin", "sparse"),
    "b": ("hybrid, plug-in encoder", "plugin", "hybrid"),
    "c": ("hybrid, all-MiniLM-L6-v2", "minilm", "hybrid"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default="a,b,c", help="comma-separated: a, b, c")
    parser.add_argument("--engine", default="edge", help="qdrant.engine of the collections")
    parser.add_argument("--against", type=Path, metavar="DIR", help="a checkout to compare with")
    parser.add_argument("--child", nargs=4, metavar=("CONFIG", "MODE", "QUERY", "SPAWNED"))
    args = parser.parse_args()
    if args.child:
        config, mode, query, spawned = args.child
        print(json.dumps(_child(config, cast("Mode", mode), query, float(spawned))))
        return
    cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        raise SystemExit(f"bench: unknown case(s) {sorted(unknown)} (a, b, c)")
    trees = [("", REPO)] + ([(" (ref)", args.against.resolve())] if args.against else [])
    with tempfile.TemporaryDirectory(prefix="search-startup-") as tmp:
        folder = Path(tmp)
        os.chdir(folder)  # `python -m` puts the working folder first: it must hold no connector
        corpus = folder / "corpus.jsonl"
        lines = CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)
        corpus.write_text("".join(lines[: args.chunks]), encoding="utf-8")
        configs = {}
        for kind in sorted({CASES[case][1] for case in cases}):
            configs[kind] = _config(folder, kind, args.engine)
            started = time.perf_counter()
            _connector("sync", "--config", str(configs[kind]), "--source", str(corpus))
            print(f"synced {args.chunks} chunks ({kind}) in {time.perf_counter() - started:.1f} s")
        rows = [
            _measure(case + label, configs[CASES[case][1]], CASES[case][2], args.repeats, tree)
            for case in cases
            for label, tree in trees
        ]
    _print(rows, args.repeats)


def _config(folder: Path, kind: str, engine: str) -> Path:
    dense = PLUGIN if kind == "plugin" else '["all-MiniLM-L6-v2"]'
    path = folder / f"{kind}.toml"
    text = f'state_dir = "{folder / kind}"\n[qdrant]\nengine = "{engine}"\n'
    path.write_text(f"{text}[dense]\nmodels = {dense}\n", encoding="utf-8")
    return path


def _connector(*argv: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "connector", *argv],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: connector {argv[0]} failed:\n{done.stderr}")


def _search_argv(config: Path, mode: str) -> list[str]:
    return ["-m", "connector", "search", "--config", str(config), "--mode", mode, "--limit", "5"]


def _measure(case: str, config: Path, mode: str, repeats: int, tree: Path) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(tree))  # the connector of ``tree``, nothing else
    first, exit_, phases, warm = [], [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        cli = subprocess.Popen(
            [sys.executable, *_search_argv(config, mode), QUERY],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(env, PYTHONUNBUFFERED="1"),  # lines as a terminal gets them
        )
        assert cli.stdout is not None
        line = cli.stdout.readline()
        first.append(time.perf_counter() - started)
        _, err = cli.communicate()
        exit_.append(time.perf_counter() - started)
        if cli.returncode != 0 or not line.strip().startswith("1."):
            raise SystemExit(f"bench: case {case}: search failed ({line!r}):\n{err}")
        child = [
            str(Path(__file__).resolve()),
            "--child",
            str(config),
            mode,
            QUERY,
            repr(time.time()),
        ]
        out = subprocess.run(
            [sys.executable, *child], capture_output=True, text=True, check=False, env=env
        )
        if out.returncode != 0:
            raise SystemExit(f"bench: case {case}: child failed:\n{out.stderr}")
        timed = json.loads(out.stdout.splitlines()[-1])
        phases.append(timed["phases"])
        warm.append(timed["warm_query"])
    share, heavy = _importtime(config, mode, env)
    return {
        "case": case,
        "first": statistics.median(first),
        "exit": statistics.median(exit_),
        "phases": {p: statistics.median(run[p] for run in phases) for p in PHASES},
        "warm": statistics.median(warm),
        "share": share,
        "heavy": heavy,
    }


def _importtime(config: Path, mode: str, env: dict[str, str]) -> tuple[float, dict[str, float]]:
    """The imports' share of a search's wall time, and each heavy package's import time."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *_search_argv(config, mode), QUERY],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    wall = time.perf_counter() - started
    total, heavy = 0, {}
    for line in done.stderr.splitlines():
        found = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( +)(\S+)$", line)
        if not found:
            continue
        cumulative, depth, name = int(found[1]), len(found[2]), found[3]
        if depth == 1:  # imported from outside any import: counted once, its own included
            total += cumulative
        if name in HEAVY and name not in heavy:
            heavy[name] = cumulative / 1e6
    return total / 1e6 / wall, heavy


def _child(config: str, mode: Mode, query: str, spawned: float) -> dict[str, object]:
    """The steps of ``connector search`` one at a time, each timed (seconds)."""
    marks = {"interpreter": time.time() - spawned}
    last = time.perf_counter()

    def mark(phase: str) -> None:
        nonlocal last
        now = time.perf_counter()
        marks[phase], last = now - last, now

    import connector.cli  # noqa: F401  (what the command imports before it runs)
    from connector.dense import SentenceTransformerEncoder
    from connector.settings import load_settings
    from connector.store import make_client
    from connector.telemetry import setup_telemetry
    from connector.wiring import build_searcher, dense_encoders

    mark("imports")
    settings = load_settings(config)
    telemetry = setup_telemetry(settings.telemetry)
    mark("settings")
    client = make_client(settings)
    client.count(settings.qdrant.collection)  # the embedded engine loads a collection on first use
    mark("store")
    dense = dense_encoders(settings)
    for encoder in dense:
        if mode != "sparse" and isinstance(encoder, SentenceTransformerEncoder):
            encoder.model  # noqa: B018  (loaded now, not by the first query)
    with build_searcher(settings, dense=dense, client=client) as searcher:
        mark("models")
        hits = searcher.search(query, mode=mode, limit=5)
        mark("query")
        searcher.search(WARM_QUERY, mode=mode, limit=5)
        mark("warm_query")
    telemetry.shutdown()
    if not hits:
        raise SystemExit("bench: no hits")
    return {"phases": {p: marks[p] for p in PHASES}, "warm_query": marks["warm_query"]}


def ms(seconds: object) -> str:
    assert isinstance(seconds, float)
    return f"{seconds * 1000:,.0f}"


def _print(rows: list[dict[str, object]], repeats: int) -> None:
    print(f"\nmedians of {repeats} runs, ms; imports' share and import times from -X importtime\n")
    head = ["case", "first result", "exit", *PHASES, "warm query", "imports' share"]
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for row in rows:
        phases = row["phases"]
        assert isinstance(phases, dict)
        cells = [
            f"{row['case']}: {CASES[str(row['case'])[0]][0]}",
            ms(row["first"]),
            ms(row["exit"]),
            *(ms(phases[p]) for p in PHASES),
            ms(row["warm"]),
            f"{row['share']:.0%}",
        ]
        print(" | ".join(cells))
    print("\nimport time (ms, cumulative; '-': not imported)\n")
    print(" | ".join(["case", *HEAVY]))
    print(" | ".join("---" for _ in range(len(HEAVY) + 1)))
    for row in rows:
        heavy = row["heavy"]
        assert isinstance(heavy, dict)
        cells = [ms(heavy[name]) if name in heavy else "-" for name in HEAVY]
        print(" | ".join([str(row["case"]), *cells]))
    for row in rows:
        heavy = row["heavy"]
        assert isinstance(heavy, dict)
        avoided = [name for name in HEAVY if name not in heavy]
        print(f"case {row['case']} never imports: {', '.join(avoided) or 'none of them'}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

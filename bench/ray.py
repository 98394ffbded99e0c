"""What does encoding on Ray cost? The same sync locally and over a simulated two-node cluster.

    python bench/ray.py [DATASET] [--chunks 20000] [--rate 3000] [--words 100]
                        [--gpu-nodes 1] [--cpus-per-node 1] [--no-sparse]

A first sync of ``--chunks`` chunks of about ``--words`` words (cut from DATASET's running text,
default ../shared/data/cranfield) into a new embedded store, with BM25 on, wired by
``connector.wiring.build_syncer`` as ``connector sync`` runs it: once with ``compute.engine =
"local"`` (one process, its stages overlapped), and once with ``compute.engine = "ray"`` against a
cluster simulated on this machine by ``ray.cluster_utils.Cluster``: a head node, and
``--gpu-nodes`` nodes with one logical GPU each (``--cpus-per-node`` CPUs on every node). The dense
model is the shipped plug-in ``connector.dense_plugins:RateEncoder`` standing in for a GPU model at
``--rate`` chunks/s (its time asleep, the GIL released, as a GPU kernel): locally one such model,
on Ray one per GPU actor. Ray's resources are logical, so the actors are placed as on a real
cluster, but every node shares this machine's cores.

Printed per engine: seconds, chunks/s, nodes and actors, and the Ray run's chunks/s over the local
one's (its overhead where it is below 1: windows travel through Ray's object store, and actors,
driver and store share the cores). Starting the cluster and the actors is timed apart: the first
once per benchmark, the second once per run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _corpus import DEFAULT_DATASET, read_docs, short_chunks, write_jsonl

REPO = Path(__file__).resolve().parents[1]
# This file is named after the benchmark, ray.py: with its folder first on the path,
# `import ray` would import it again instead of Ray.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def settings_for(args: argparse.Namespace, state: Path, corpus: Path, ray: str | None) -> Any:
    from connector.settings import load_settings

    overrides: dict[str, Any] = {
        "state_dir": str(state),
        "source": {"path": str(corpus), "name": "bench"},
        "qdrant": {"collection": "bench"},
        "dense": {
            "models": [
                {
                    "encoder": "connector.dense_plugins:RateEncoder",
                    "name": "vec",
                    "options": {"dim": 384, "rate": args.rate},
                }
            ]
        },
        "sparse": {"enabled": args.sparse},
        "sync": {"workers": 1},
        "gpu": {"enabled": ray is not None, "lease_timeout_s": 0.1},
    }
    if ray is not None:
        overrides["compute"] = {"engine": "ray", "address": ray}
    return load_settings(None, overrides)


def sync(
    args: argparse.Namespace, work: Path, name: str, corpus: Path, ray: str | None
) -> dict[str, Any]:
    """One first sync into a new store; its wall time from the collection's creation on."""
    from connector.wiring import build_syncer

    settings = settings_for(args, work / name, corpus, ray)
    with build_syncer(settings, holder="bench", record=False) as job:
        started = time.perf_counter()
        record = job.run()
        seconds = time.perf_counter() - started
    assert record.counts.chunks_seen == args.chunks, record.counts
    compute = record.compute()
    return {
        "seconds": seconds,
        "rate": args.chunks / seconds,
        "nodes": compute.nodes,
        "workers": compute.workers,
        "roles": ",".join(sorted(a.role for a in record.actors)) or "-",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=3000.0, help="dense chunks/s per GPU")
    parser.add_argument("--words", type=int, default=100)
    parser.add_argument("--gpu-nodes", type=int, default=1)
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--no-sparse", dest="sparse", action="store_false")
    args = parser.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        work = Path(tmp)
        corpus = work / "corpus.jsonl"
        write_jsonl(short_chunks(read_docs(args.dataset), args.chunks, args.words), corpus)
        print(
            f"{args.chunks:,} chunks of ~{args.words} words, dense at {args.rate:,.0f} chunks/s "
            f"per GPU, sparse {'BM25' if args.sparse else 'off'}; {os.cpu_count()} cores here"
        )
        local = sync(args, work, "local", corpus, None)

        started = time.perf_counter()
        # The nodes' workers import the connector from this checkout, as the driver does.
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": args.cpus_per_node, "include_dashboard": False},
        )
        for _ in range(args.gpu_nodes):
            cluster.add_node(num_cpus=args.cpus_per_node, num_gpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="ERROR", include_dashboard=False)
        start_s = time.perf_counter() - started
        try:
            over = sync(args, work, "ray", corpus, cluster.address)
        finally:
            ray.shutdown()
            cluster.shutdown()

    nodes = 1 + args.gpu_nodes
    gpus = args.gpu_nodes
    print(f"simulated cluster: {nodes} nodes, {gpus} logical GPU(s), started in {start_s:.1f} s")
    print(f"{'engine':>7} {'seconds':>8} {'chunks/s':>9} {'nodes':>6} {'actors':>7}  roles")
    for name, run in (("local", local), ("ray", over)):
        print(
            f"{name:>7} {run['seconds']:>8.1f} {run['rate']:>9,.0f} {run['nodes']:>6} "
            f"{run['workers']:>7}  {run['roles']}"
        )
    ratio = over["rate"] / local["rate"]
    print(f"ray / local chunks/s: {ratio:.2f} (overhead {max(0.0, 1 - ratio):.0%})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""A sync encoded on a two-node Ray cluster, wired as users run it (``compute.engine = "ray"``
through ``build_syncer``): the same points as a local sync, work on both nodes, where the run
encoded in its report, manifest and live progress, and a re-run that converges after an actor
died."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connector.errors import ComputeError
from connector.runs import RunRecord
from connector.settings import load_settings
from connector.store.edge import EdgeClient
from connector.wiring import build_syncer
from tests.connector.compute.rest import RestWrites, serving
from tests.connector.sources.test_folder_workers import _folder
from tests.connector.store.servers import ServerLike
from tests.connector.test_parallel import comparable

RATE = {"encoder": "connector.dense_plugins:RateEncoder", "name": "vec", "options": {"dim": 16}}


def settings_for(
    workdir: Path,
    ray: str | None,
    dense: dict[str, Any] = RATE,
    gpu: bool = False,
    qdrant: dict[str, Any] | None = None,
    source: Path | None = None,
    **compute: Any,
) -> Any:
    overrides: dict[str, Any] = {
        "qdrant": qdrant or {},
        "gpu": {"enabled": gpu, "lease_timeout_s": 0.1},
        "state_dir": str(workdir / "state"),
        "source": {"path": str(source or workdir / "corpus.jsonl"), "name": "docs"},
        "sync": {"batch_size": 8, "workers": 1},
        "dense": {"models": [dense]},
        "sparse": {"model": "qdrant-bm25"},
    }
    if ray is not None:
        overrides["compute"] = {"engine": "ray", "address": ray, **compute}
    return load_settings(None, overrides)


def sync(
    workdir: Path, ray: str | None, store: str = "qdrant", **options: Any
) -> tuple[RunRecord, dict[str, dict[str, Any]]]:
    """One recorded run into the embedded store ``store``; its record and the stored points by
    chunk id (run id and clock left out)."""
    return sync_into(settings_for(workdir, ray, **options), EdgeClient(workdir / store))


def sync_into(settings: Any, client: Any) -> tuple[RunRecord, dict[str, dict[str, Any]]]:
    with build_syncer(settings, client=client) as job:
        record = job.run()
        points, _ = job.store.scroll(job.writer.collection, limit=1000, with_vectors=True)
    return record, dict(comparable(p) for p in points)


def test_a_ray_sync_stores_what_a_local_sync_stores(workdir: Path, ray_cluster: str) -> None:
    local, expected = sync(workdir, None, store="local")
    record, stored = sync(workdir, ray_cluster)
    assert record.status == "succeeded"
    assert stored == expected
    assert len(stored) == 40
    assert record.totals() == local.totals()
    assert record.vectors_encoded == local.vectors_encoded


def test_work_runs_on_both_nodes_and_the_run_says_where(workdir: Path, ray_cluster: str) -> None:
    record, _ = sync(workdir, ray_cluster, gpu=True, cpu_actors=2)
    compute = record.compute()
    assert (compute.engine, compute.nodes, compute.workers) == ("ray", 2, 3)
    roles = sorted(actor.role for actor in record.actors)
    assert roles == ["dense", "sparse", "sparse"]
    # The GPU actor holds the GPU node's GPU: no CUDA device there, so its models ran on the CPU.
    assert {actor.device for actor in record.actors} == {"cpu"}
    assert all(actor.chunks > 0 for actor in record.actors)
    assert sum(a.chunks for a in record.actors if a.role == "dense") == 40
    assert sum(a.chunks for a in record.actors if a.role == "sparse") == 40
    assert all(node.chunks > 0 for node in compute.per_node)
    manifest = workdir / "state" / "runs" / record.run_id / "processing_summary.json"
    written = json.loads(manifest.read_text())["compute"]
    assert written == compute.model_dump(mode="json")
    assert record.report()["compute"] == written
    live = json.loads((workdir / "state" / "progress.json").read_text())
    assert live["compute"]["engine"] == "ray"
    assert len(live["actors"]) == 3


def test_a_second_ray_run_encodes_nothing_unchanged(workdir: Path, ray_cluster: str) -> None:
    sync(workdir, ray_cluster)
    record, _ = sync(workdir, ray_cluster)
    assert record.counts.skipped_unchanged == 40
    assert record.counts.encoded == 0


def test_an_actor_that_dies_is_restarted_and_the_run_stores_every_point(
    workdir: Path, ray_cluster: str
) -> None:
    _, expected = sync(workdir, None, store="local")
    dying = {
        "encoder": "tests.connector.compute.plugins:DyingEncoder",
        "name": "vec",
        "options": {"marker": str(workdir / "deaths"), "die_at": 2, "deaths": 1},
    }
    record, stored = sync(workdir, ray_cluster, dense=dying)
    assert len(list((workdir / "deaths").iterdir())) == 1  # the actor did die
    assert record.status == "succeeded"
    assert stored == expected


def test_an_actor_that_keeps_dying_fails_the_run_deleting_nothing_and_a_rerun_converges(
    workdir: Path, ray_cluster: str
) -> None:
    sync(workdir, ray_cluster)
    # The source changes: five records gone, five edited (to encode again).
    corpus = workdir / "corpus.jsonl"
    records = [json.loads(line) for line in corpus.read_text().splitlines()]
    for record in records[10:15]:
        record["text"] += " (revised)"
    del records[30:35]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records))
    _, expected = sync(workdir, None, store="local")
    dying = {
        "encoder": "tests.connector.compute.plugins:DyingEncoder",
        "name": "vec",
        "options": {"marker": str(workdir / "deaths"), "die_at": 1, "deaths": 1},
    }
    with pytest.raises(ComputeError, match="compute.max_restarts"):
        sync(workdir, ray_cluster, dense=dying, max_restarts=0)
    with build_syncer(settings_for(workdir, None), client=EdgeClient(workdir / "qdrant")) as job:
        kept = job.store.count(job.writer.collection)
    assert kept == 40  # the run that did not finish deleted nothing
    record, stored = sync(workdir, ray_cluster, dense=dying, max_restarts=0)
    assert record.status == "succeeded"
    assert (record.counts.encoded, record.writes.deleted) == (5, 5)
    assert stored == expected


def test_against_a_server_the_actors_write_the_points(workdir: Path, ray_cluster: str) -> None:
    # The same kind of store for both runs: engines differ in how they round stored floats.
    _, expected = sync_into(settings_for(workdir, None), ServerLike())
    server = ServerLike()
    writes = RestWrites(server.inner)
    with serving(writes) as url:
        qdrant = {"url": url, "cluster": {"write_ordering": "strong"}}
        settings = settings_for(workdir, ray_cluster, gpu=True, qdrant=qdrant)
        record, stored = sync_into(settings, server)
    assert record.status == "succeeded"
    assert stored == expected
    # Every point came from the actors, over HTTP, with the configured ordering.
    sent = [(method, query) for method, _, query in writes.received]
    assert sent and {method for method, _ in sent} == {"upsert"}
    assert all(query.get("ordering") == "strong" for _, query in sent)
    assert record.writes.upserted == 40
    assert sorted({a.role for a in record.actors}) == ["dense", "sparse", "write"]
    # The driver wrote the run's record, never a chunk: every upsert it sent went to the runs
    # collection (payload only).
    for request in server.requests("upsert"):
        assert request == {"wait": True, "ordering": request.get("ordering")}


def test_a_folders_files_are_read_and_cut_by_the_actors(workdir: Path, ray_cluster: str) -> None:
    docs = _folder(workdir)
    local, expected = sync(workdir, None, store="local", source=docs)
    record, stored = sync(workdir, ray_cluster, source=docs, cpu_actors=2)
    assert stored == expected
    assert record.totals() == local.totals()
    assert (
        record.skips.by_kind
        == local.skips.by_kind
        == {
            "broken_file": 1,
            "not_utf8": 1,
            "unsupported_format": 1,
        }
    )
    # Every file in a format the connector reads went to an actor (the PNG is refused unread).
    files = [actor.files for actor in record.actors]
    assert sum(files) == 26 and all(files)

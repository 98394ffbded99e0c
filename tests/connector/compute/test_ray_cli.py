"""``connector sync --ray [ADDRESS]``: the flag, the settings it stands for, and the one line a
user gets when Ray is missing or the cluster cannot run the configured actors."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest

from connector.errors import ComputeError
from connector.settings import load_settings
from connector.wiring import build_syncer
from tests.cli import run

RATE = '{ encoder = "connector.dense_plugins:RateEncoder", name = "vec", options = { dim = 16 } }'


@pytest.fixture
def config(workdir: Path) -> Path:
    path = workdir / "connector.toml"
    path.write_text(
        f'state_dir = "{workdir / "state"}"\n'
        f'[source]\npath = "{workdir / "corpus.jsonl"}"\nname = "docs"\n'
        f"[dense]\nmodels = [{RATE}]\n"
        "[sync]\nbatch_size = 8\nworkers = 1\n"
    )
    return path


def test_sync_with_ray_reports_where_it_encoded(
    config: Path, ray_cluster: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "sync", "--config", str(config), "--ray", ray_cluster, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["compute"]["engine"] == "ray"
    assert report["compute"]["workers"] == 2  # no GPU asked for: one actor per CPU
    assert report["chunks_seen"] == report["encoded"] == 40


def test_a_local_sync_reports_itself_local(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "sync", "--config", str(config), "--json")
    assert code == 0, err
    compute = json.loads(out)["compute"]
    assert (compute["engine"], compute["nodes"], compute["workers"]) == ("local", 1, 1)
    assert compute["per_node"][0]["chunks"] == 40


def test_without_ray_installed_the_flag_says_how_to_install_it(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    code, out, err = run(capsys, "sync", "--config", str(config), "--ray")
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert 'pip install "qdrant-hybrid-connector[ray]"' in lines[0]
    assert not (config.parent / "state" / "runs").exists()  # nothing ran


def test_more_gpu_actors_than_the_cluster_has_gpus_is_refused(
    workdir: Path, config: Path, ray_cluster: str
) -> None:
    settings = load_settings(
        config, {"compute": {"engine": "ray", "address": ray_cluster, "gpu_actors": 3}}
    )
    with build_syncer(settings) as job, pytest.raises(ComputeError, match="has 1 GPUs"):
        job.run()
    assert job.syncer.record is not None and job.syncer.record.status == "failed"


def test_actors_that_cannot_be_placed_fail_the_run_in_time(
    workdir: Path, config: Path, ray_cluster: str
) -> None:
    import ray

    # Other work holds the head node's CPU: an actor asking for one per CPU waits for it.
    @ray.remote(num_cpus=1)
    class Squatter:
        def node(self) -> str:
            return str(ray.get_runtime_context().get_node_id())

    squatters = [Squatter.remote() for _ in range(2)]
    ray.get([s.node.remote() for s in squatters])
    try:
        compute = {"engine": "ray", "address": ray_cluster, "start_timeout_s": 2}
        settings = load_settings(config, {"compute": compute})
        with build_syncer(settings) as job, pytest.raises(ComputeError, match="start_timeout_s"):
            job.run()
    finally:
        for squatter in squatters:
            ray.kill(squatter)


def test_an_address_where_no_cluster_answers_fails_at_once_in_one_line(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    code, _, err = run(capsys, "sync", "--config", str(config), "--ray", f"127.0.0.1:{port}")
    assert code == 1
    (line,) = err.strip().splitlines()
    assert f"no Ray cluster answers at compute.address = '127.0.0.1:{port}'" in line
    assert time.monotonic() - started < 30  # Ray alone would wait minutes

"""The dashboard driven with Pilot over real state folders: real syncs, real lease holders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from connector.runs import write_progress
from connector.runs.live import ActorProgress
from connector.runs.manifest import read_summary, summary_path
from connector.settings import Settings, load_settings
from connector.switches import load_runtime
from tests.fakes import FakeProbe
from tests.paths import REPO
from tests.processes import Reaper, survivors
from tests.tui.conftest import closed_port, run_sync, wait_for
from tests.tui.scripted import ray_run
from tui import build_app
from tui.health import QdrantHealth
from tui.history import HistoryTable
from tui.panels import Banner, ClusterPanel, GpuPanel, RunPanel, StatusLine
from tui.screens import ConfirmScreen, ManifestScreen
from tui.state import Collector

pytestmark = pytest.mark.anyio


def status_text(app) -> str:
    return str(app.query_one(StatusLine).content)


async def test_the_sparse_switch_is_persisted_and_the_next_sync_honours_it(
    workdir: Path, settings: Settings, no_gpu
) -> None:
    state = settings.state_dir
    app = build_app(settings, probe=no_gpu)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "sparse ON" in status_text(app))
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        shown = app.snapshot
        await wait_for(pilot, lambda: app.snapshot is not shown)  # refreshed under the question
        await pilot.press("n")  # declined: nothing written
        assert load_runtime(state).sparse_enabled is None
        await pilot.press("s", "y")
        assert load_runtime(state).sparse_enabled is False
        await wait_for(pilot, lambda: "sparse OFF for next syncs (switch)" in status_text(app))

    assert run_sync(workdir) == 0
    (off,) = [read_summary(p) for p in (state / "runs").glob("*/processing_summary.json")]
    assert off is not None and off.schema_version == "4.0"
    assert not off.run.sparse_enabled and off.sparse_run is None

    app = build_app(settings, probe=no_gpu)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.query_one(HistoryTable).row_count == 1)
        await pilot.press("s", "y")
        await wait_for(pilot, lambda: "sparse ON for next syncs (switch)" in status_text(app))
    assert load_runtime(state).sparse_enabled is True

    assert run_sync(workdir) == 0
    runs = sorted(
        (read_summary(p) for p in (state / "runs").glob("*/processing_summary.json")),
        key=lambda s: s.run.started_at,  # type: ignore[union-attr]
    )
    assert [s.schema_version for s in runs] == ["4.0", "4.1"]  # type: ignore[union-attr]
    assert runs[1].sparse_run is not None and runs[1].sparse_run.sparse_model == "qdrant-bm25"


async def test_the_run_table_shows_a_real_sync_and_enter_opens_its_manifest(
    workdir: Path, settings: Settings, no_gpu
) -> None:
    assert run_sync(workdir) == 0
    (path,) = (settings.state_dir / "runs").glob("*/processing_summary.json")
    run_id = path.parent.name
    app = build_app(settings, probe=no_gpu)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(HistoryTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        cells = [str(cell) for cell in table.get_row_at(0)]
        assert cells[2:] == ["succeeded", "40", "40", "0", "0.0%", "cpu", "4.1"]
        assert table.selected_run_id == run_id
        assert "No sync running" in str(app.query_one(RunPanel).content)
        assert f"last: run {run_id[:8]} succeeded" in str(app.query_one(RunPanel).content)

        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, ManifestScreen)
        assert screen.title_text == f"run {run_id}"
        stored = summary_path(settings.state_dir, run_id).read_text()
        assert json.loads(screen.text) == json.loads(stored)
        await pilot.press("escape")
        assert not isinstance(app.screen, ManifestScreen)


_HOLDER = """
import sys, time
from connector.gpu import LeasePool
from tests.fakes import FakeProbe, fake_cuda

pool = LeasePool(sys.argv[1], FakeProbe(1), holder="connector sync", cuda_device=fake_cuda)
pool.lease([0], model="qdrant-minilm-attention", vram_bytes=12 << 30).acquire()
print("held", flush=True)
time.sleep(120)
"""


async def test_the_lease_table_shows_a_lease_held_by_another_process(settings: Settings) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(settings.state_dir)],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        app = build_app(settings, probe=FakeProbe(1), refresh_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            panel = app.query_one(GpuPanel)
            await wait_for(pilot, lambda: panel.rows)
            ((gpu, memory, util, lease),) = panel.rows
            assert gpu == "0 Simulated GPU" and memory.endswith("0.0/16.0") and util == "0%"
            assert lease.startswith(f"pid {holder.pid} connector sync, ")
            assert lease.endswith("\nqdrant-minilm-attention, 12.0 GiB")
            holder.kill()  # a dead holder frees its GPU, and the table says so
            holder.wait(timeout=30)
            await wait_for(pilot, lambda: panel.rows and panel.rows[0][3] == "free")
    finally:
        holder.kill()
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()


async def test_no_gpu_is_said_plainly(settings: Settings, no_gpu) -> None:
    app = build_app(settings, probe=no_gpu)
    async with app.run_test(size=(80, 24)) as pilot:
        panel = app.query_one(GpuPanel)
        await wait_for(pilot, lambda: app.snapshot is not None)
        assert panel.rows == []
        assert str(panel.content).startswith("No GPU found")


async def test_a_live_ray_run_shows_its_cluster_and_one_row_per_actor(
    settings: Settings, no_gpu
) -> None:
    state = settings.state_dir
    state.mkdir(parents=True)
    run = ray_run()  # recorded by this process: it is live while the test runs
    actors, run.actors = run.actors, []
    write_progress(state, run.live())  # the cluster is up, no actor has finished a window
    app = build_app(settings, probe=no_gpu, refresh_s=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        panel = app.query_one(ClusterPanel)
        await wait_for(pilot, lambda: panel.display)
        assert str(panel.content) == "No actor has reported yet."
        run.actors = actors
        write_progress(state, run.live())
        await wait_for(pilot, lambda: panel.rows)
        assert panel.display and panel.border_title == "Ray cluster · 2 nodes · 3 workers"
        assert panel.rows == [
            ("10.0.0.1 04be", "encode", "cpu", "—", "0", "—"),
            ("10.0.0.2 9f3a", "dense", "cuda:0", "256", "200", "812.5"),
            ("10.0.0.2 9f3a", "sparse", "cpu", "32", "100", "—"),
        ]
        console = Console(width=96, color_system=None)
        with console.capture() as shown:
            console.print(panel.content)
        header, *lines = shown.get().splitlines()
        assert header.split() == ["Node", "Role", "Device", "Batch", "Chunks", "Chunks/s"]
        assert lines[1].split() == ["10.0.0.2", "9f3a", "dense", "cuda:0", "256", "200", "812.5"]
        assert app.query_one(RunPanel).border_title == "Current run · ray"

        run.actors += [  # more than the panel lists: the rest are counted
            ActorProgress(node=f"10.0.0.{n} 77aa", role="dense", device="cuda:0") for n in (3, 4)
        ]
        write_progress(state, run.live())
        await wait_for(pilot, lambda: len(panel.rows) == 5)
        with console.capture() as shown:
            console.print(panel.content)
        assert len(shown.get().splitlines()) == 1 + ClusterPanel.MAX_ROWS + 1
        assert shown.get().splitlines()[-1].strip() == "… 1 more actor"

        run.status = "succeeded"  # the run ends: the panel goes
        write_progress(state, run.live())
        await wait_for(pilot, lambda: not panel.display)
        assert panel.rows == [] and app.query_one(RunPanel).border_title == "Current run"


async def test_a_live_local_run_says_local_and_its_workers_in_one_title(
    settings: Settings, no_gpu
) -> None:
    from connector.runs import RunRecord

    run = RunRecord(run_id="r", source="memory://x", collection="chunks", batch_size=8)
    run.workers = 2
    settings.state_dir.mkdir(parents=True)
    write_progress(settings.state_dir, run.live())
    app = build_app(settings, probe=no_gpu)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.live)
        assert app.query_one(RunPanel).border_title == "Current run · local, 2 workers"
        assert not app.query_one(ClusterPanel).display


async def test_qdrant_unreachable_shows_a_banner_and_the_dashboard_keeps_working(
    workdir: Path, no_gpu
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    settings = load_settings(None, {"qdrant": {"url": url, "api_key": "s3cret-key"}})
    app = build_app(settings, probe=no_gpu)
    async with app.run_test(size=(80, 24)) as pilot:
        banner = app.query_one(Banner)
        await wait_for(pilot, lambda: banner.display)
        text = str(banner.content)
        assert f"Qdrant at {url} is unreachable" in text and "retrying every 5s" in text
        assert "s3cret-key" not in text
        assert "UNREACHABLE" in status_text(app)
        await pilot.press("s", "y")  # still answers keys; the switch needs no Qdrant
        assert load_runtime(settings.state_dir).sparse_enabled is False
        await pilot.press("r")
        await pilot.pause(0.2)
        assert app.is_running


async def test_the_banner_goes_once_qdrant_answers_again(settings: Settings, no_gpu) -> None:
    from tui.app import DashboardApp

    answers = iter([QdrantHealth("http://q:6333", False, "no answer"), *[None] * 1000])

    def check() -> QdrantHealth:
        return next(answers) or QdrantHealth("http://q:6333", True)

    collector = Collector(settings.state_dir, probe=no_gpu)
    app = DashboardApp(collector.snapshot, check_health=check, health_every_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        banner = app.query_one(Banner)
        await wait_for(pilot, lambda: banner.display)
        await wait_for(pilot, lambda: not banner.display)
        assert "qdrant reachable" in status_text(app)


def _big_corpus(workdir: Path, copies: int = 40) -> Path:
    """The fixture corpus repeated under new ids: long enough to stop a sync half-way."""
    lines = (workdir / "corpus.jsonl").read_text().splitlines()
    big = workdir / "big.jsonl"
    with big.open("w") as out:
        for copy in range(copies):
            for line in lines:
                record = json.loads(line)
                record["_id"] = f"{copy}-{record['_id']}"
                out.write(json.dumps(record) + "\n")
    return big


@pytest.mark.parametrize("workers", ["1", pytest.param("2", marks=pytest.mark.slow)])
async def test_a_sync_started_from_the_dashboard_is_cancelled_gracefully(
    workdir: Path, settings: Settings, no_gpu, reaper: Reaper, workers: str
) -> None:
    from tui.app import DashboardApp
    from tui.control import SyncProcess

    big = _big_corpus(workdir)
    command = [sys.executable, "-m", "connector", "sync", "--source", str(big), "--batch-size", "8"]
    command += ["--workers", workers]
    collector = Collector(settings.state_dir, source=str(big), probe=no_gpu)
    started: list[SyncProcess] = []

    class Reaped(SyncProcess):
        """Killed with what it started if the test fails (it outlives the dashboard)."""

        def start(self) -> int:
            pid = super().start()
            reaper.look(pid)
            return pid

    def new_sync() -> SyncProcess:
        started.append(Reaped(command, settings.state_dir))
        return started[-1]

    app = DashboardApp(collector.snapshot, new_sync=new_sync, refresh_s=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("g")
        panel = app.query_one(RunPanel)

        def writing() -> bool:
            snapshot = app.snapshot
            return bool(
                snapshot and snapshot.live and snapshot.progress and snapshot.progress.chunks_done
            )

        await wait_for(pilot, writing, timeout_s=120)
        (process,) = started
        assert process.pid is not None
        tree = reaper.look(process.pid)  # the sync and the worker pool it runs
        assert workers == "1" or len(tree) > int(workers), tree
        # The running run's row counts from the live progress (its manifest is written at its end).
        await wait_for(pilot, lambda: app.snapshot.runs[0].chunks > 0)  # type: ignore[union-attr]
        assert app.snapshot.runs[0].status == "running"  # type: ignore[union-attr]
        assert f"pid {process.pid} (started here)" in str(panel.content)
        await pilot.press("g")  # one at a time
        assert len(started) == 1
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.sync is None, timeout_s=60)
        await wait_for(pilot, lambda: "No sync running" in str(panel.content))
    assert process.wait(0) == 143
    assert survivors(tree, within_s=10) == []
    assert app.snapshot is not None and app.snapshot.progress is not None
    summary = read_summary(summary_path(settings.state_dir, app.snapshot.progress.run_id))
    assert summary is not None and summary.run.status == "interrupted"
    assert summary.run.reason == "stopped by SIGTERM"
    assert 0 < summary.counts["chunks_seen"] < 1600
    assert process.log_path.exists()

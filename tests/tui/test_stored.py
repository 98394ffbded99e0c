"""Against a Qdrant server the history is every host's: the runs collection, read in a worker.

A local-mode client (``QdrantClient(":memory:")``) stands for the server; no server runs here.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from connector.runs import RunRecord, RunStore
from connector.runs.manifest import ProcessInfo, ProcessingSummary
from connector.settings import Settings, load_settings
from connector.wiring import open_store
from tests.tui.conftest import closed_port, run_sync, wait_for
from tui import build_app
from tui.app import DashboardApp
from tui.history import HistoryTable
from tui.panels import Banner
from tui.screens import ManifestScreen
from tui.state import Collector
from tui.stored import RunsReader

pytestmark = pytest.mark.anyio

KEY = "s3cret-runs-key"


@pytest.fixture
def server_settings(workdir: Path) -> Settings:
    """A server nobody answers at: the runs client tests pass stands for it."""
    url = f"http://127.0.0.1:{closed_port()}"
    return load_settings(None, {"qdrant": {"url": url, "api_key": KEY}})


def other_host_run(host: str = "gpu-7", minute: int = 30) -> ProcessingSummary:
    run = RunRecord(
        run_id=f"00000000-0000-4000-8000-0000000000{minute:02d}",
        source="/data/big.jsonl",
        collection="chunks",
        batch_size=64,
        started_at=f"2099-01-01T10:{minute:02d}:00.000+00:00",  # newer than any run of this test
        process=ProcessInfo(host=host, pid=4242),
    )
    run.status = "succeeded"
    run.counts.chunks_seen = run.counts.encoded = 1234
    return run.summary()


def server_holding(settings: Settings, *summaries: ProcessingSummary) -> QdrantClient:
    client = QdrantClient(":memory:")
    runs = RunStore(open_store(settings, client=client), settings.qdrant.runs_collection)
    runs.ensure()
    for summary in summaries:
        runs.put(summary)
    return client


class Unreachable:
    """A server client whose every call fails as a refused connection would (its message
    echoes the key, as a careless proxy might)."""

    def __getattr__(self, name: str) -> object:
        def refuse(*args: object, **kwargs: object) -> object:
            raise ConnectionError(f"connection refused (api-key: {KEY})")

        return refuse


def test_the_reader_lists_the_runs_of_every_host(server_settings: Settings) -> None:
    client = server_holding(server_settings, other_host_run("gpu-7", 30), other_host_run("b", 31))
    stored = RunsReader(server_settings, client=client, limit=50).read()
    assert stored.problem is None and stored.target == server_settings.qdrant.url
    assert [s.run.process.host for s in stored.summaries if s.run.process] == ["b", "gpu-7"]
    assert RunsReader(server_settings, client=client, limit=1).read().summaries[0].run.id[-2:] == (
        "31"
    )
    client.close()


def test_no_runs_collection_yet_is_an_empty_history_not_a_problem(
    server_settings: Settings,
) -> None:
    stored = RunsReader(server_settings, client=QdrantClient(":memory:")).read()
    assert (stored.summaries, stored.problem) == ((), None)


def test_an_unreachable_server_is_a_problem_without_the_key(server_settings: Settings) -> None:
    stored = RunsReader(server_settings, client=Unreachable()).read()  # type: ignore[arg-type]
    assert stored.summaries == () and stored.problem is not None
    assert "ConnectionError" in stored.problem and KEY not in stored.problem
    closed = RunsReader(server_settings).read()  # the configured server: nobody listens
    assert closed.summaries == () and closed.problem and "no answer from Qdrant" in closed.problem


async def test_the_embedded_store_has_no_runs_collection_to_read(
    settings: Settings, no_gpu
) -> None:
    with pytest.raises(ValueError, match=r"qdrant\.url is not set"):
        RunsReader(settings)
    app = build_app(settings, probe=no_gpu)  # the manifests only, as before: no Host column
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        table = app.query_one(HistoryTable)
        assert not table.hosts and "host" not in {key.value for key in table.columns}
        assert app.stored is None


async def test_the_history_shows_runs_of_other_hosts_with_their_host(
    workdir: Path, server_settings: Settings, no_gpu
) -> None:
    assert run_sync(workdir) == 0  # a run of this host, in its manifest
    (path,) = (server_settings.state_dir / "runs").glob("*/processing_summary.json")
    here = path.parent.name
    client = server_holding(server_settings, other_host_run())
    app = build_app(server_settings, probe=no_gpu, runs_client=client)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.query_one(HistoryTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        rows = {str(key.value): [str(c) for c in table.get_row(key)] for key in table.rows}
        other = other_host_run().run.id
        assert rows[other][2:] == [
            "succeeded",
            "gpu-7",
            "1,234",
            "1,234",
            "0",
            "off",
            "none",
            "4.0",
        ]
        assert rows[here][2:4] == ["succeeded", socket.gethostname()]
        assert table.get_row_index(other) == 0  # newest first

        table.move_cursor(row=0)
        await pilot.press("enter")  # its manifest is not on this host's disk: the record is shown
        screen = app.screen
        assert isinstance(screen, ManifestScreen)
        assert screen.path == f"runs collection at {server_settings.qdrant.url}"
        assert '"host": "gpu-7"' in screen.text
    client.close()


async def test_an_unreachable_runs_collection_keeps_local_history_and_says_so(
    workdir: Path, server_settings: Settings, no_gpu
) -> None:
    assert run_sync(workdir) == 0
    collector = Collector(server_settings.state_dir, probe=no_gpu)
    reader = RunsReader(server_settings, client=Unreachable())  # type: ignore[arg-type]
    app = DashboardApp(collector.snapshot, read_history=reader.read, health_every_s=0.2)
    async with app.run_test(size=(120, 30)) as pilot:
        banner = app.query_one(Banner)
        await wait_for(pilot, lambda: banner.display)
        text = str(banner.content)
        assert "Run history: this host's manifests only" in text and KEY not in text
        assert "\n" not in text  # one line
        table = app.query_one(HistoryTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        (key,) = table.rows
        assert [str(c) for c in table.get_row(key)][2:4] == ["succeeded", socket.gethostname()]
        await pilot.pause(0.5)  # a few more failed reads: still up, still one notice
        assert app.is_running and str(banner.content) == text

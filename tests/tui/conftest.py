"""Helpers of the dashboard tests: a real sync into a state folder, and waiting on the app."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot

from connector.cli import main
from connector.settings import Settings, load_settings


def run_sync(workdir: Path, *extra: str) -> int:
    """``connector sync`` of the fixture corpus into ``workdir/state`` (in this process)."""
    return main(["sync", "--source", str(workdir / "corpus.jsonl"), "--json", *extra])


@pytest.fixture
def workdir(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shared working folder, with ``CONNECTOR_STATE_DIR`` pointing at its ``state``."""
    monkeypatch.setenv("CONNECTOR_STATE_DIR", str(workdir / "state"))
    return workdir


@pytest.fixture
def settings(workdir: Path) -> Settings:
    return load_settings(None, {"source": {"path": str(workdir / "corpus.jsonl")}})


async def wait_for(pilot: Pilot, ready: Callable[[], object], timeout_s: float = 30.0) -> None:
    """Let the app run until ``ready()`` is true (its workers refresh in the background)."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, "the dashboard never showed it"
        await pilot.pause(0.05)


def closed_port() -> int:
    """A local port nothing listens on (a Qdrant server that does not answer)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def no_gpu() -> Iterator[object]:
    from tests.fakes import FakeProbe

    yield FakeProbe(0)


@pytest.fixture
def anyio_backend() -> str:
    # The async tests run on anyio's pytest plugin (installed with httpx), on asyncio only.
    return "asyncio"

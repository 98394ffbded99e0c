"""Fixtures shared by the test packages."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import Reaper

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@functools.cache
def _cuda_available() -> bool:
    import torch  # a required package: missing, it fails the test instead of skipping it

    return bool(torch.cuda.is_available())


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``gpu`` is skipped where CUDA is absent, and for no other reason."""
    if item.get_closest_marker("gpu") is not None and not _cuda_available():
        pytest.skip("no CUDA device")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder holding the fixture corpus, with no ``CONNECTOR_*`` setting from
    the environment leaking in."""
    for name in list(os.environ):
        if name.startswith("CONNECTOR_"):
            monkeypatch.delenv(name)
    # The tests count the fixture's records as the chunks they are; cutting long records into
    # chunks of the model's tokens (the default) is tested on its own.
    monkeypatch.setenv("CONNECTOR_CHUNKING__SPLIT_RECORDS", "false")
    monkeypatch.chdir(tmp_path)
    shutil.copy(FIXTURES / "corpus.jsonl", tmp_path / "corpus.jsonl")
    return tmp_path


@pytest.fixture
def reaper() -> Iterator[Reaper]:
    """Starts the test's processes; kills them and their descendants when the test ends."""
    reaper = Reaper()
    try:
        yield reaper
    finally:
        reaper.close()

"""Fixtures shared by the test packages."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder holding the fixture corpus, with no ``CONNECTOR_*`` setting from
    the environment leaking in."""
    for name in list(os.environ):
        if name.startswith("CONNECTOR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    shutil.copy(FIXTURES / "corpus.jsonl", tmp_path / "corpus.jsonl")
    return tmp_path

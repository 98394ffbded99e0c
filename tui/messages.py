"""What the dashboard's workers report back to the app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.message import Message

from tui.health import QdrantHealth
from tui.state import Snapshot
from tui.stored import StoredRuns

__all__ = ["HealthChecked", "HistoryRead", "SnapshotReady", "SyncEnded"]


@dataclass
class SnapshotReady(Message):
    """A new snapshot of the state folder and the probe."""

    snapshot: Snapshot


@dataclass
class HealthChecked(Message):
    """The answer of the Qdrant server (or its silence)."""

    health: QdrantHealth


@dataclass
class HistoryRead(Message):
    """The runs collection's history (or why it could not be read)."""

    stored: StoredRuns


@dataclass
class SyncEnded(Message):
    """The sync started from the dashboard ended (or could not start: ``problem``)."""

    pid: int | None
    status: int | None
    log_path: Path
    problem: str | None = None

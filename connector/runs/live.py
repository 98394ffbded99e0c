"""The live progress of the current sync, in a small JSON file in the state folder.

The embedded Qdrant lets one process open its folder at a time, so a dashboard cannot read a running
sync's record from the runs collection. The sync also writes ``progress.json`` (derived from its
:class:`~connector.runs.record.RunRecord`, replaced atomically: a reader never sees half a file),
and :func:`read_progress` reads it from any process.
Counts, rates, devices and ids only: no chunk text.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connector._files import write_json_atomic
from connector.runs._process import process_alive
from connector.runs.manifest import ComputeSection, ProcessInfo, RunStatus

__all__ = ["FILE_NAME", "ActorProgress", "LiveProgress", "read_progress", "write_progress"]

FILE_NAME = "progress.json"


class ActorProgress(BaseModel):
    """One Ray actor of a running sync: where it runs, on what, and how fast."""

    model_config = ConfigDict(extra="ignore")

    node: str
    """Its machine, as in :class:`~connector.runs.manifest.NodeUsage`."""
    role: str
    """``dense`` (the dense models), ``sparse`` (the sparse model), ``encode`` (both) or
    ``write`` (joins a window's halves and writes its points to a server)."""
    device: str
    """Where its models run now (``cuda:0``, ``cpu``)."""
    batch_size: int | None = None
    """Chunks per model call of its last window (the adaptive batch on a GPU)."""
    chunks: int = 0
    """Chunks it encoded so far."""
    files: int = 0
    """Files of a folder it read and cut into chunks so far."""
    chunks_per_s: float | None = None
    """Its rate over the time it was busy."""


class LiveProgress(BaseModel):
    """A snapshot of a sync, written every half second or so while it runs."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    status: RunStatus
    collection: str
    source: str
    started_at: str
    updated_at: str
    chunks_done: int = 0
    bytes_done: int = 0
    total_bytes: int | None = None
    chunks_per_s: float | None = None
    eta_s: float | None = None
    """Seconds left, from the share of bytes read (``None`` when the size is unknown)."""
    batch_size: int
    dense_device: str | None = None
    sparse_device: str | None = None
    fallbacks: int = 0
    """Chunks whose sparse vector did not come from the model, so far."""
    process: ProcessInfo
    compute: ComputeSection | None = None
    """Where the run encodes (``None`` from versions before Ray runs)."""
    actors: list[ActorProgress] = Field(default_factory=list)
    """A Ray run's actors (none on a local run)."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_live(self) -> bool:
        """Running and its process still there (``False`` for a process killed mid-way)."""
        return self.status == "running" and process_alive(self.process) is not False


def write_progress(state_dir: Path, progress: LiveProgress) -> Path:
    """Replace ``<state_dir>/progress.json`` atomically; returns its path."""
    path = Path(state_dir) / FILE_NAME
    return write_json_atomic(path, progress.model_dump(mode="json"), indent=2, sort_keys=True)


def read_progress(state_dir: Path) -> LiveProgress | None:
    """The last snapshot written in ``state_dir``; ``None`` when there is none (or it is not
    one this version can read). Check :meth:`LiveProgress.is_live` before showing it as live."""
    try:
        return LiveProgress.model_validate_json((Path(state_dir) / FILE_NAME).read_bytes())
    except (OSError, ValidationError):
        return None

"""The operator dashboard (Textual): GPUs and leases, the current run, run history, the sparse
switch, and starting or stopping a sync. A thin view over what :mod:`connector` exposes; it reads
the state folder and never needs the embedded Qdrant that a running sync holds. Against a Qdrant
server it also reads the runs collection, for the runs of every host."""

from __future__ import annotations

from tui.app import DashboardApp
from tui.control import SyncProcess, stop_live_sync, sync_command
from tui.health import QdrantHealth, check_qdrant
from tui.launch import build_app, run_dashboard
from tui.state import Collector, RunRow, Snapshot, SparseSwitch

__all__ = [
    "Collector",
    "DashboardApp",
    "QdrantHealth",
    "RunRow",
    "Snapshot",
    "SparseSwitch",
    "SyncProcess",
    "build_app",
    "check_qdrant",
    "run_dashboard",
    "stop_live_sync",
    "sync_command",
]

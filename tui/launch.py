"""Builds the dashboard from the settings and runs it (``connector tui``, ``python -m tui``)."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from connector.gpu import DeviceProbe
from connector.redact import RedactingFilter
from connector.settings import Settings
from tui.app import DashboardApp
from tui.control import SyncProcess, sync_command
from tui.health import check_qdrant
from tui.state import Collector
from tui.stored import RunsReader

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

__all__ = ["LOG_FILE", "build_app", "run_dashboard"]

LOG_FILE = "dashboard.log"
"""The dashboard's log, in the state folder: a full-screen app cannot print log lines."""


def build_app(
    settings: Settings,
    config_path: str | Path | None = None,
    *,
    probe: DeviceProbe | None = None,
    refresh_s: float = 1.0,
    runs_client: QdrantClient | None = None,
) -> DashboardApp:
    """The dashboard over ``settings``' state folder, collection, source and Qdrant.

    Args:
        settings: The connector's settings.
        config_path: The settings file, passed on to syncs started from the dashboard.
        probe: Lists the GPUs (default: NVML).
        refresh_s: Seconds between refreshes.
        runs_client: The client the runs collection is read with, when ``qdrant.url`` is set
            (tests pass one standing for the server). Default: one of the configured server.
    """
    collector = Collector(
        settings.state_dir,
        collection=settings.qdrant.collection,
        source=settings.source.path,
        sparse_configured=settings.sparse.enabled,
        probe=probe,
    )

    def new_sync() -> SyncProcess:
        return SyncProcess(sync_command(settings, config_path), settings.state_dir)

    server = settings.qdrant.url is not None
    return DashboardApp(
        collector.snapshot,
        check_health=partial(check_qdrant, settings) if server else None,
        read_history=(
            RunsReader(settings, client=runs_client, limit=collector.history).read
            if server
            else None
        ),
        new_sync=new_sync,
        refresh_s=refresh_s,
    )


def run_dashboard(settings: Settings, config_path: str | Path | None = None) -> int:
    """Run the dashboard until the operator quits; returns the exit status."""
    _log_to_file(settings)
    build_app(settings, config_path).run()
    return 0


def _log_to_file(settings: Settings) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(settings.state_dir / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):  # lines on stderr would tear through the screen
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)

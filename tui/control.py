"""Starting and stopping syncs from the dashboard.

A sync started here is a child process running ``connector sync``, exactly as an operator would
start it headless: it holds the embedded Qdrant folder and writes ``progress.json``, which the
dashboard reads like any other sync's. Stopping one sends SIGTERM, which ``connector sync`` turns
into a graceful end: writes already queued finish and the run is recorded ``interrupted``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from connector.runs.live import LiveProgress
from connector.settings import Settings

__all__ = ["LOG_NAME", "SyncProcess", "stop_live_sync", "sync_command"]

LOG_NAME = "dashboard-sync.log"
"""File in the state folder that receives the output of syncs started from the dashboard."""


def sync_command(settings: Settings, config_path: str | Path | None = None) -> list[str]:
    """``connector sync`` of the configured source into the configured collection.

    Raises:
        ValueError: No source is configured (``source.path``).
    """
    if not settings.source.path:
        raise ValueError("source.path is not set: configure a source to sync from the dashboard")
    command = [sys.executable, "-m", "connector", "sync", "--source", settings.source.path]
    command += ["--collection", settings.qdrant.collection]
    if config_path is not None:
        command += ["--config", str(config_path)]
    return command


class SyncProcess:
    """One sync child process.

    Args:
        command: What to run (see :func:`sync_command`).
        state_dir: The dashboard's state folder; the child is told to use it, and its output
            goes to :data:`LOG_NAME` there.
        env: Extra environment for the child.
    """

    def __init__(
        self,
        command: Sequence[str],
        state_dir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = list(command)
        self.state_dir = Path(state_dir).resolve()
        self.env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path:
        return self.state_dir / LOG_NAME

    def start(self) -> int:
        """Start the child; returns its pid.

        Raises:
            OSError: It could not be started.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = os.environ | {"CONNECTOR_STATE_DIR": str(self.state_dir)} | self.env
        with open(self.log_path, "ab") as log:
            # Its own session: a Ctrl-C meant for the dashboard's terminal does not reach it,
            # and it keeps running if the dashboard is closed.
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self._process.pid

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait(self, timeout_s: float | None = None) -> int | None:
        """The exit status, after waiting up to ``timeout_s``; ``None`` while it still runs."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> bool:
        """Ask the sync to end gracefully (SIGTERM); ``False`` when it is not running."""
        if not self.running():
            return False
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        return True


def stop_live_sync(progress: LiveProgress) -> bool:
    """Send SIGTERM to the process of a sync started elsewhere (e.g. headless in a terminal).

    Only a sync of this host whose process is the one that wrote ``progress`` (pid and start time
    match) is signalled; returns whether one was.
    """
    if progress.process.host != socket.gethostname() or not progress.is_live():
        return False
    try:
        os.kill(progress.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    return True

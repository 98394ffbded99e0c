"""The processes a test starts and those they start in turn (sync worker pools), found through
``/proc``, so that a test can check that none outlives its run and kill any that would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from connector.runs import process_alive
from connector.runs.manifest import ProcessInfo


def process_tree(pid: int) -> list[ProcessInfo]:
    """``pid`` and every process below it now: its children, theirs, and so on (Linux
    ``/proc``). Each comes with its start time, so that a pid given to another process later is
    not mistaken for it."""
    found: list[ProcessInfo] = []
    children: dict[int, list[ProcessInfo]] = {}
    host = socket.gethostname()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue  # it ended while we looked
        # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
        fields = raw[raw.rfind(")") + 2 :].split()
        info = ProcessInfo(host=host, pid=int(entry.name), start_ticks=int(fields[19]))
        children.setdefault(int(fields[1]), []).append(info)
        if info.pid == pid:
            found.append(info)
    below = [pid]
    while below:
        for child in children.get(below.pop(), []):
            found.append(child)
            below.append(child.pid)
    return found


def survivors(processes: Iterable[ProcessInfo], within_s: float = 0.0) -> list[ProcessInfo]:
    """Those of ``processes`` still running after up to ``within_s`` seconds of waiting for
    them to end (zombies count as ended)."""
    deadline = time.monotonic() + within_s
    left = [p for p in processes if process_alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if process_alive(p)]
    return left


class Reaper:
    """Kills, when a test ends however it ends, the processes it started and every descendant
    of theirs it has seen: a failing test leaves nothing running behind it."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []
        self.seen: list[ProcessInfo] = []

    def start(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """``subprocess.Popen(argv, **kwargs)``, reaped at the end of the test."""
        process: subprocess.Popen[bytes] = subprocess.Popen(argv, **kwargs)
        self.started.append(process)
        return process

    def look(self, pid: int) -> list[ProcessInfo]:
        """``pid`` and its descendants now, remembered: they are killed at the end of the test,
        also once ``pid`` is gone (an orphan's parent is no longer ``pid``)."""
        found = process_tree(pid)
        self.seen.extend(found)
        return found

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                self.look(process.pid)
                process.kill()
        for info in survivors(self.seen):
            os.kill(info.pid, signal.SIGKILL)
        for process in self.started:
            process.wait(timeout=30)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()

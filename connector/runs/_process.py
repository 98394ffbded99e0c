"""Which process runs a sync, and whether it still does.

A run records its host, pid and (on Linux) the process's start time. A later process on the same
host can then tell a run whose process died (killed, out of memory, power loss) from one still
going, even when the pid has since been given to another process.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from connector.runs.manifest import ProcessInfo

__all__ = ["process_alive", "this_process"]


def this_process() -> ProcessInfo:
    """Host, pid and start time of the running process."""
    pid = os.getpid()
    return ProcessInfo(host=socket.gethostname(), pid=pid, start_ticks=_stat(pid)[1])


def process_alive(info: ProcessInfo) -> bool | None:
    """Whether the process in ``info`` still runs; ``None`` when it ran on another host."""
    if info.host != socket.gethostname():
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    state, ticks = _stat(info.pid)
    if state in {"Z", "X"}:  # exited, not yet reaped by its parent
        return False
    if info.start_ticks is not None and ticks is not None and ticks != info.start_ticks:
        return False  # the pid now belongs to another process
    return True


def _stat(pid: int) -> tuple[str | None, int | None]:
    """State letter and start time (clock ticks after boot) from ``/proc``; ``None`` elsewhere."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None, None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None, None

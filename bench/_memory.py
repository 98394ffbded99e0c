"""Peak memory of a benchmark's processes (not part of the connector)."""

from __future__ import annotations

import os
import resource
import threading
from pathlib import Path


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """Peak RSS (VmHWM) of process ``pid`` in MB; ``None`` once it is gone.

    VmHWM rather than ``ru_maxrss``: a process started by exec keeps its parent's ``ru_maxrss``.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        if pid != "self":
            return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


class HelperPeaks:
    """Watches this process's descendants (a sync's writer process, sparse workers, the fork
    server they start from) and keeps each one's peak RSS as last seen.

    A helper's peak is read every ``every_s`` seconds while it runs, so growth in its last
    moments can be missed: the figure is a floor for each helper.
    """

    def __init__(self, every_s: float = 0.2) -> None:
        self.peaks: dict[int, float] = {}
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="helper-peaks", daemon=True)

    def __enter__(self) -> HelperPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def total_mb(self) -> float:
        """The helpers' peaks added up (0 when none ran)."""
        return sum(self.peaks.values())

    def _watch(self) -> None:
        while not self._stop.wait(self._every_s):
            self._sample()

    def _sample(self) -> None:
        for pid in _descendants(os.getpid()):
            peak = peak_rss_mb(pid)
            if peak is not None:
                self.peaks[pid] = max(peak, self.peaks.get(pid, 0.0))

"""Progress reporting: a no-op by default, a bar with rate and ETA on a terminal."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["NULL_PROGRESS", "NullProgress", "Progress", "TerminalProgress"]


class Progress(Protocol):
    """Told how far a sync is."""

    def start(self, total_bytes: int | None) -> None: ...

    def advance(self, chunks: int, bytes_read: int) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    """Says nothing (pipes, tests, the library)."""

    def start(self, total_bytes: int | None) -> None:
        pass

    def advance(self, chunks: int, bytes_read: int) -> None:
        pass

    def finish(self) -> None:
        pass


NULL_PROGRESS = NullProgress()


class TerminalProgress:
    """A bar on stderr: chunks done, chunks/s, and an ETA from the share of bytes read."""

    def __init__(self, description: str = "sync") -> None:
        self.description = description
        self._bar: Any = None
        self._task: Any = None
        self._chunks = 0

    def start(self, total_bytes: int | None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[chunks]} chunks"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(
            self.description, total=total_bytes or None, chunks=0, rate=""
        )

    def advance(self, chunks: int, bytes_read: int) -> None:
        if self._bar is None:
            return
        self._chunks += chunks
        elapsed = self._bar.tasks[0].elapsed or 0.0
        rate = f"{self._chunks / elapsed:,.0f}/s" if elapsed > 0 else ""
        self._bar.update(self._task, completed=bytes_read, chunks=f"{self._chunks:,}", rate=rate)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

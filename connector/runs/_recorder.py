"""Records one sync as it runs: its manifest file, its runs-collection record, its live progress."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from connector.errors import ConnectorError, describe_failure
from connector.runs._collection import RunStore, mark_dead_runs
from connector.runs.live import write_progress
from connector.runs.manifest import DeviceUsage, ProcessingSummary, write_summary

if TYPE_CHECKING:
    from connector.pipeline.progress import Progress
    from connector.pipeline.syncer import Syncer
    from connector.runs.record import RunRecord

__all__ = ["RunRecorder"]

log = logging.getLogger(__name__)


class RunRecorder:
    """Wraps one ``Syncer.run`` call; a context manager, with the run's id in :attr:`run_id`.

    On entering it marks runs left ``running`` by dead processes ``interrupted``, then writes the
    new run's record (``running``). While the run goes it updates the live progress file (every
    ``file_every_s``) and the record's progress (every ``record_every_s``). On leaving it writes
    the final manifest: ``succeeded``, ``failed`` or ``interrupted``, with the reason.

    Args:
        syncer: The syncer that will run; its progress is extended while the block runs.
        source_name: The source's name.
        state_dir: Where manifests and ``progress.json`` go.
        store: The runs collection; ``None`` writes files only.
        config_digest: Digest of the settings, recorded in the manifest.
        record_every_s: Least time between progress writes to the runs collection.
        file_every_s: Least time between writes of ``progress.json``; by default every batch,
            so that a run waiting on a slow source never shows an older state than it has.
        devices: Accelerators the run used so far, with VRAM peaks and caps (GPU leases
            supply it); default: none, as on a CPU-only run.
    """

    def __init__(
        self,
        syncer: Syncer,
        source_name: str,
        state_dir: Path,
        store: RunStore | None = None,
        *,
        config_digest: str | None = None,
        record_every_s: float = 5.0,
        file_every_s: float = 0.0,
        devices: Callable[[], Sequence[DeviceUsage]] | None = None,
    ) -> None:
        self.syncer = syncer
        self.source_name = source_name
        self.state_dir = Path(state_dir)
        self.store = store
        self.record_every_s = record_every_s
        self.file_every_s = file_every_s
        self.devices = devices or (lambda: ())
        self.run_id = str(uuid.uuid4())
        self.record: RunRecord = syncer.new_record(source_name, self.run_id)
        """The run's record: this one until the syncer starts the run, then the syncer's."""
        self.record.config_digest = config_digest
        self.summary: ProcessingSummary | None = None
        """The last manifest written."""
        self._inner: Progress = syncer.progress
        self._clock = time.monotonic
        self._file_at = float("-inf")
        self._record_at = float("-inf")

    # -- the block -----------------------------------------------------------------------------

    def __enter__(self) -> RunRecorder:
        if self.store is not None:
            self.store.ensure()
            mark_dead_runs(self.store, self.state_dir, noticed_by=self.run_id)
        self._write(force=True)
        self.syncer.progress = self  # the terminal bar, if any, is still told through _inner
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.syncer.progress = self._inner
        record = self._current()
        if exc is not None:
            if record.status in {"running", "succeeded"}:
                record.status = "interrupted" if _is_stop(exc) else "failed"
            record.reason = describe_failure(exc)
        try:
            self._write(force=True)
        except ConnectorError as failure:
            if exc is None:
                raise
            # The run's own failure is the one to report; the file is written already.
            log.warning("could not record the end of run %s: %s", self.run_id, failure)

    # -- Progress ------------------------------------------------------------------------------

    def start(self, total_bytes: int | None) -> None:
        self._inner.start(total_bytes)

    def advance(self, chunks: int, bytes_read: int) -> None:
        self._inner.advance(chunks, bytes_read)
        try:
            self._write()
        except ConnectorError as exc:  # a missed progress update must not stop the run
            log.warning("could not record the progress of run %s: %s", self.run_id, exc)

    def finish(self) -> None:
        self._inner.finish()

    # -- writing -------------------------------------------------------------------------------

    def _current(self) -> RunRecord:
        """The record to write: the syncer's once it started this run, else the first one."""
        running = self.syncer.record
        if running is not None and running is not self.record and running.run_id == self.run_id:
            # What only the recorder knows: when the run was first recorded, and its settings.
            running.started_at = self.record.started_at
            running.config_digest = self.record.config_digest
            self.record = running
        return self.record

    def _write(self, *, force: bool = False) -> None:
        now = self._clock()
        to_file = force or now - self._file_at >= self.file_every_s
        to_record = force or now - self._record_at >= self.record_every_s
        if not (to_file or to_record):
            return
        record = self._current()
        record.devices = list(self.devices())
        summary = record.summary()
        self.summary = summary
        # The start's forced write does not count: the first batch's progress goes out at once.
        if to_file:
            self._file_at = now if not force else self._file_at
            write_progress(self.state_dir, record.live())
        if force:
            write_summary(self.state_dir, summary)
        if to_record and self.store is not None:
            self._record_at = now if not force else self._record_at
            self.store.put(summary)


def _is_stop(exc: BaseException) -> bool:
    return isinstance(exc, KeyboardInterrupt | SystemExit)

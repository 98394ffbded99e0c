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
from connector.runs.collection import RunStore, mark_dead_runs
from connector.runs.live import LiveProgress, write_progress
from connector.runs.manifest import (
    DeviceUsage,
    ProcessingSummary,
    RunProgress,
    build_summary,
    now_iso,
    write_summary,
)
from connector.runs.process import this_process

if TYPE_CHECKING:
    from connector.pipeline.progress import Progress
    from connector.pipeline.syncer import Syncer, SyncReport

__all__ = ["RunRecorder", "describe_failure"]

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
        self.config_digest = config_digest
        self.record_every_s = record_every_s
        self.file_every_s = file_every_s
        self.devices = devices or (lambda: ())
        self.run_id = str(uuid.uuid4())
        self.started_at = now_iso()
        self.process = this_process()
        self.summary: ProcessingSummary | None = None
        """The last manifest written."""
        self._initial = syncer.new_report(source_name, self.run_id)
        self._inner: Progress = syncer.progress
        self._clock = time.monotonic
        self._started = self._clock()
        self._chunks = 0
        self._bytes = 0
        self._total_bytes: int | None = None
        self._file_at = float("-inf")
        self._record_at = float("-inf")

    # -- the block -----------------------------------------------------------------------------

    def __enter__(self) -> RunRecorder:
        if self.store is not None:
            self.store.ensure()
            mark_dead_runs(self.store, self.state_dir, noticed_by=self.run_id)
        self._write(self._initial, force=True)
        self.syncer.progress = self  # the terminal bar, if any, is still told through _inner
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.syncer.progress = self._inner
        report = self.syncer.report if self.syncer.report is not None else self._initial
        if report.run_id != self.run_id:  # the block failed before the run started
            report = self._initial
        reason = None
        if exc is not None:
            if report.status in {"running", "succeeded"}:
                report.status = "interrupted" if _is_stop(exc) else "failed"
            reason = describe_failure(exc)
        try:
            self._write(report, force=True, reason=reason, final=True)
        except ConnectorError as failure:
            if exc is None:
                raise
            # The run's own failure is the one to report; the file is written already.
            log.warning("could not record the end of run %s: %s", self.run_id, failure)

    # -- Progress ------------------------------------------------------------------------------

    def start(self, total_bytes: int | None) -> None:
        self._total_bytes = total_bytes
        self._started = self._clock()
        self._inner.start(total_bytes)

    def advance(self, chunks: int, bytes_read: int) -> None:
        self._inner.advance(chunks, bytes_read)
        self._chunks += chunks
        self._bytes = bytes_read
        if self.syncer.report is not None:
            try:
                self._write(self.syncer.report)
            except ConnectorError as exc:  # a missed progress update must not stop the run
                log.warning("could not record the progress of run %s: %s", self.run_id, exc)

    def finish(self) -> None:
        self._inner.finish()

    # -- writing -------------------------------------------------------------------------------

    def progress(self) -> RunProgress:
        """Chunks and bytes done, rate and ETA so far."""
        elapsed = max(self._clock() - self._started, 1e-9)
        eta = None
        if self._total_bytes and self._bytes:
            left = max(self._total_bytes - self._bytes, 0)
            eta = round(left / (self._bytes / elapsed), 1)
        return RunProgress(
            chunks_done=self._chunks,
            bytes_done=self._bytes,
            total_bytes=self._total_bytes,
            chunks_per_s=round(self._chunks / elapsed, 3) if self._chunks else None,
            eta_s=eta,
        )

    def _write(
        self,
        report: SyncReport,
        *,
        force: bool = False,
        reason: str | None = None,
        final: bool = False,
    ) -> None:
        now = self._clock()
        to_file = force or now - self._file_at >= self.file_every_s
        to_record = force or now - self._record_at >= self.record_every_s
        if not (to_file or to_record):
            return
        progress = self.progress()
        if final:
            progress.eta_s = None
        summary = build_summary(
            report,
            self.started_at,
            reason=reason,
            config_digest=self.config_digest,
            process=self.process,
            progress=progress,
            devices=self.devices(),
        )
        self.summary = summary
        # The start's forced write does not count: the first batch's progress goes out at once.
        if to_file:
            self._file_at = now if not force else self._file_at
            write_progress(self.state_dir, self._live(report, summary))
        if force:
            write_summary(self.state_dir, summary)
        if to_record and self.store is not None:
            self._record_at = now if not force else self._record_at
            self.store.put(summary)

    def _live(self, report: SyncReport, summary: ProcessingSummary) -> LiveProgress:
        progress = summary.progress
        return LiveProgress(
            run_id=self.run_id,
            status=summary.run.status,
            collection=report.collection,
            source=report.source,
            started_at=self.started_at,
            updated_at=summary.run.updated_at or now_iso(),
            chunks_done=progress.chunks_done,
            bytes_done=progress.bytes_done,
            total_bytes=progress.total_bytes,
            chunks_per_s=progress.chunks_per_s,
            eta_s=progress.eta_s,
            batch_size=self.syncer.batch_size,
            dense_device=report.dense_device,
            sparse_device=report.sparse_device,
            fallbacks=report.sparse_fallbacks,
            process=self.process,
        )


def _is_stop(exc: BaseException) -> bool:
    return isinstance(exc, KeyboardInterrupt | SystemExit)

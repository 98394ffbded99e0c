"""What the dashboard shows, gathered from the state folder and the GPU probe into one snapshot.

Everything here reads files (``progress.json``, the manifests, the lease files, ``runtime.json``)
and asks NVML; nothing opens Qdrant. A sync running in another process holds the embedded Qdrant
folder, and the dashboard must still show it. Against a Qdrant server, the runs collection's
history (every host's runs, read by :mod:`tui.stored` in a worker of its own) is merged into a
snapshot with :meth:`Snapshot.with_stored`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from connector.errors import ConfigError
from connector.gpu import DeviceInfo, DeviceProbe, LeaseRecord, NvmlProbe, read_leases
from connector.runs.live import ActorProgress, LiveProgress, read_progress
from connector.runs.manifest import FILE_NAME, ComputeSection, ProcessingSummary, read_summary
from connector.switches import sparse_enabled
from tui.stored import StoredRuns

__all__ = ["Collector", "RunRow", "Snapshot", "SparseSwitch"]


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run of the history, as the table and the charts show it."""

    run_id: str
    started_at: str
    duration_s: float | None
    status: str
    chunks: int
    encoded: int | None
    """``None`` while the run goes: only its end records it."""
    deleted: int | None
    fallback_ratio: float | None
    """Share of sparse vectors that did not come from the model; ``None``: sparse was off."""
    chunks_per_s: float | None
    device: str
    schema_version: str
    reason: str | None = None
    host: str | None = None
    """The host that ran it (``None`` in manifests that do not say)."""

    @classmethod
    def from_summary(cls, summary: ProcessingSummary) -> RunRow:
        run = summary.run
        performance = summary.performance
        return cls(
            run_id=run.id,
            started_at=run.started_at,
            duration_s=performance.duration_s if performance else None,
            status=run.status,
            chunks=summary.counts.get("chunks_seen", 0),
            encoded=summary.counts.get("encoded", 0),
            deleted=summary.counts.get("deleted", 0),
            fallback_ratio=_fallback_ratio(summary),
            chunks_per_s=performance.chunks_per_s.get("overall") if performance else None,
            device=summary.dense.device if summary.dense else "none",
            schema_version=summary.schema_version,
            reason=run.reason,
            host=run.process.host if run.process is not None else None,
        )

    def with_progress(self, progress: LiveProgress, now: datetime) -> RunRow:
        """This row brought up to date by ``progress`` when it is this running run's (a running
        run's manifest is rewritten only at its end); otherwise this row as it is."""
        if self.run_id != progress.run_id or self.status != "running":
            return self
        started = datetime.fromisoformat(progress.started_at)
        return replace(
            self,
            chunks=progress.chunks_done,
            encoded=None,
            deleted=None,
            duration_s=max(0.0, (now - started).total_seconds()),
            chunks_per_s=progress.chunks_per_s,
        )


def _fallback_ratio(summary: ProcessingSummary) -> float | None:
    sparse = summary.sparse_run
    if sparse is None:
        return None
    coverage = sparse.coverage
    if not coverage.total:
        return 0.0
    return (coverage.total - coverage.available) / coverage.total


@dataclass(frozen=True, slots=True)
class SparseSwitch:
    """Whether the next sync computes sparse vectors, and what decided it."""

    enabled: bool
    decided_by: str
    """``switch`` (runtime.json, set by the dashboard or `connector sparse`) or ``settings``."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything on the main screen at one moment."""

    taken_at: datetime
    state_dir: Path
    source: str | None
    """The configured source (``source.path``) a sync started here would read."""
    collection: str
    gpus: tuple[DeviceInfo, ...] = ()
    leases: tuple[LeaseRecord, ...] = ()
    progress: LiveProgress | None = None
    """The last progress written by a sync, live or not (see ``live``)."""
    live: bool = False
    """Whether ``progress`` belongs to a sync that runs now."""
    runs: tuple[RunRow, ...] = ()
    """Newest first."""
    sparse: SparseSwitch = field(default_factory=lambda: SparseSwitch(True, "settings"))
    problems: tuple[str, ...] = ()
    """Files that could not be read, said plainly (the rest of the snapshot is still good)."""
    stored: StoredRuns | None = None
    """The runs collection's history merged into ``runs`` (see :meth:`with_stored`)."""

    def lease_on(self, device: int) -> LeaseRecord | None:
        return next((lease for lease in self.leases if lease.device == device), None)

    @property
    def compute(self) -> ComputeSection | None:
        """Where the sync running now encodes; ``None`` when none runs or its version does not
        say."""
        return self.progress.compute if self.live and self.progress is not None else None

    @property
    def actors(self) -> tuple[ActorProgress, ...]:
        """The Ray actors of the sync running now, by node, role and device."""
        if not self.live or self.progress is None:
            return ()
        return tuple(sorted(self.progress.actors, key=lambda a: (a.node, a.role, a.device)))

    def with_stored(self, stored: StoredRuns) -> Snapshot:
        """This snapshot with the runs collection's history merged into ``runs``.

        Runs are matched by id: the stored record wins (the runs collection is written at least
        as often as a manifest), runs only in the state folder stay. Both lists hold their newest
        runs, so the newest of the merge are right up to the longer of their limits. A read that
        failed leaves the state folder's history and adds a one-line problem.
        """
        rows = {row.run_id: row for row in self.runs}
        rows.update((s.run.id, RunRow.from_summary(s)) for s in stored.summaries)
        merged = sorted(rows.values(), key=lambda row: row.started_at, reverse=True)
        merged = merged[: max(len(self.runs), stored.limit)]
        if self.live and self.progress is not None:
            merged = [row.with_progress(self.progress, self.taken_at) for row in merged]
        problems = self.problems
        if stored.problem is not None:
            problems += (
                f"Run history: this host's manifests only (the runs collection at "
                f"{stored.target} is unreadable: {stored.problem})",
            )
        return replace(self, runs=tuple(merged), problems=problems, stored=stored)


class Collector:
    """Builds :class:`Snapshot` objects; cheap enough to call every second.

    Args:
        state_dir: The state folder syncs write to.
        collection: The configured collection, for the title.
        source: The configured source, if any.
        sparse_configured: ``sparse.enabled`` from the settings (the switch, when set, wins).
        probe: Lists the GPUs (default: NVML; a machine without one reports none).
        history: How many recent runs to list.
        clock: Gives "now" (UTC); tests pass a fixed one.
        liveness: Tells whether the progress file's sync still runs (default: its own check).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        collection: str = "chunks",
        source: str | None = None,
        sparse_configured: bool = True,
        probe: DeviceProbe | None = None,
        history: int = 50,
        clock: Callable[[], datetime] | None = None,
        liveness: Callable[[LiveProgress], bool] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.collection = collection
        self.source = source
        self.sparse_configured = sparse_configured
        self.probe = probe if probe is not None else NvmlProbe()
        self.history = history
        self.clock = clock or (lambda: datetime.now(UTC))
        self.liveness = liveness or (lambda progress: progress.is_live())
        self._cache: dict[Path, tuple[int, ProcessingSummary]] = {}

    def _summaries(self) -> list[ProcessingSummary]:
        # Every manifest is read once per change, not once a second: a long history stays cheap.
        found: dict[Path, tuple[int, ProcessingSummary]] = {}
        for path in (self.state_dir / "runs").glob(f"*/{FILE_NAME}"):
            try:
                mtime = path.stat().st_mtime_ns
            except OSError:
                continue
            cached = self._cache.get(path)
            if cached is not None and cached[0] == mtime:
                found[path] = cached
                continue
            summary = read_summary(path)
            if summary is not None:
                found[path] = (mtime, summary)
        self._cache = found
        return [summary for _, summary in found.values()]

    def snapshot(self) -> Snapshot:
        """What the state folder and the probe say now."""
        problems: list[str] = []
        try:
            enabled, decided_by = sparse_enabled(self.state_dir, self.sparse_configured, None)
        except ConfigError as exc:
            problems.append(str(exc))
            enabled, decided_by = self.sparse_configured, "settings"
        progress = read_progress(self.state_dir)
        live = progress is not None and self.liveness(progress)
        summaries = sorted(self._summaries(), key=lambda s: s.run.started_at)
        rows = [RunRow.from_summary(s) for s in summaries[::-1][: self.history]]
        if live and progress is not None:
            rows = [row.with_progress(progress, self.clock()) for row in rows]
        return Snapshot(
            taken_at=self.clock(),
            state_dir=self.state_dir,
            source=self.source,
            collection=self.collection,
            gpus=tuple(self.probe.devices()),
            leases=tuple(read_leases(self.state_dir)),
            progress=progress,
            live=live,
            runs=tuple(rows),
            sparse=SparseSwitch(enabled, decided_by),
            problems=tuple(problems),
        )

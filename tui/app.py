"""The dashboard app: a thin view over snapshots gathered by workers.

Nothing here blocks the UI: the state folder and the probe are read in a thread worker every
``refresh_s``; the Qdrant server (when one is configured) is asked in another every
``health_every_s``, and its runs collection read in a third after each answer (so the banner says
first whether the server answers at all); a sync started here runs as a child process watched by a
fourth. Their results come back as messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import DataTable, Footer

from connector.errors import ConfigError
from connector.runs.manifest import summary_path
from connector.switches import RuntimeState, load_runtime, save_runtime
from tui.control import SyncProcess, stop_live_sync
from tui.health import QdrantHealth
from tui.history import HistoryTable
from tui.messages import HealthChecked, HistoryRead, SnapshotReady, SyncEnded
from tui.panels import Banner, ClusterPanel, GpuPanel, RunPanel, StatusLine, TrendPanel
from tui.screens import ConfirmScreen, ManifestScreen
from tui.state import Snapshot
from tui.stored import StoredRuns

__all__ = ["DashboardApp"]

_EXIT_MEANING = {0: "succeeded", 143: "stopped, recorded interrupted", 1: "failed"}


class DashboardApp(App[None]):
    """The operator dashboard.

    Args:
        collect: Gathers a snapshot (a :class:`tui.state.Collector`'s ``snapshot``); runs in a
            worker thread.
        check_health: Asks the Qdrant server; ``None`` when there is none to ask (embedded).
        read_history: Reads the runs collection on the server (every host's runs), merged into
            the snapshots' history; ``None``: the state folder's manifests only (embedded).
        new_sync: Builds the sync process that ``g`` starts; raises ``ValueError`` with the
            reason when none can be started (no source configured). ``None``: starting is off.
        refresh_s: Seconds between snapshots.
        health_every_s: Seconds between Qdrant checks (also the retry delay while it is down);
            the runs collection is read after each (on its own at this pace when there is no
            check).
    """

    CSS_PATH = "dashboard.tcss"
    TITLE = "connector dashboard"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("s", "toggle_sparse", "Sparse"),
        Binding("g", "start_sync", "Sync"),
        Binding("x", "cancel_sync", "Cancel"),
        Binding("r", "refresh", "Refresh"),
        Binding("d", "toggle_theme", "Theme"),
    ]

    def __init__(
        self,
        collect: Callable[[], Snapshot],
        *,
        check_health: Callable[[], QdrantHealth] | None = None,
        read_history: Callable[[], StoredRuns] | None = None,
        new_sync: Callable[[], SyncProcess] | None = None,
        refresh_s: float = 1.0,
        health_every_s: float = 5.0,
    ) -> None:
        super().__init__()
        self._collect = collect
        self._check_health = check_health
        self._read_history = read_history
        self._new_sync = new_sync
        self.refresh_s = refresh_s
        self.health_every_s = health_every_s
        self.snapshot: Snapshot | None = None
        """What the screen shows: the last collected snapshot with the runs collection's history
        merged in."""
        self._collected: Snapshot | None = None
        self.stored: StoredRuns | None = None
        """The last read of the runs collection."""
        self.health: QdrantHealth | None = None
        if check_health is None:
            self.health = QdrantHealth(target="embedded", reachable=None)
        self.sync: SyncProcess | None = None
        """The sync started from here, while it runs."""
        self._asking: set[str] = set()
        """Groups of the workers that are asking now."""

    def compose(self) -> ComposeResult:
        yield StatusLine("loading…", id="status")
        yield Banner(id="banner")
        yield GpuPanel(id="gpus", classes="panel")
        with Horizontal(id="middle"):
            yield RunPanel(id="run", classes="panel")
            yield TrendPanel(id="trends", classes="panel")
        yield ClusterPanel(id="cluster", classes="panel")
        yield HistoryTable(hosts=self._read_history is not None, id="history", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#gpus").border_title = "GPUs & leases"
        self.query_one("#run").border_title = "Current run"
        self.query_one("#trends").border_title = "Recent runs"
        self.query_one("#history").border_title = "Run history (Enter: manifest)"
        self.query_one(Banner).display = False
        self.query_one(ClusterPanel).display = False
        self.query_one(HistoryTable).focus()
        self.action_refresh()
        self.set_interval(self.refresh_s, self.action_refresh)
        if self._check_health is not None:
            self._start_health_check()
            self.set_interval(self.health_every_s, self._start_health_check)
        elif self._read_history is not None:
            self._start_history_read()
            self.set_interval(self.health_every_s, self._start_history_read)

    # -- workers -------------------------------------------------------------------------------

    def action_refresh(self) -> None:
        """Gather a new snapshot (skipped while the last one is still being gathered)."""
        self._ask("collect", lambda: SnapshotReady(self._collect()))

    def _start_health_check(self) -> None:
        check = self._check_health
        if check is not None:
            self._ask("health", lambda: HealthChecked(check()))

    def _start_history_read(self) -> None:
        read = self._read_history
        if read is not None:
            self._ask("history", lambda: HistoryRead(read()))

    def _ask(self, group: str, ask: Callable[[], Message]) -> None:
        """Post what ``ask`` answers, from a thread worker of ``group``; skipped while the last
        one of that group is still asking (a slow server must not pile up requests)."""
        if group in self._asking:
            return
        self._asking.add(group)

        def answer() -> None:
            try:
                self.post_message(ask())
            finally:
                self._asking.discard(group)

        self.run_worker(answer, group=group, thread=True, exit_on_error=False)

    @work(thread=True, group="sync", exit_on_error=False)
    def _watch_sync(self, process: SyncProcess) -> None:
        try:
            process.start()
        except OSError as exc:
            problem = f"could not start the sync: {exc}"
            self.post_message(SyncEnded(None, None, process.log_path, problem))
            return
        self.call_from_thread(self.show, None)
        status = None
        while status is None:  # a short wait at a time, so quitting is never held up
            status = process.wait(0.25)
        self.post_message(SyncEnded(process.pid, status, process.log_path))

    # -- messages ------------------------------------------------------------------------------

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self.show(message.snapshot)

    def on_health_checked(self, message: HealthChecked) -> None:
        self.health = message.health
        self.show(None)
        self._start_history_read()

    def on_history_read(self, message: HistoryRead) -> None:
        self.stored = message.stored
        self.show(None)

    def on_sync_ended(self, message: SyncEnded) -> None:
        self.sync = None
        if message.problem is not None:
            self.notify(message.problem, severity="error", timeout=8)
        else:
            meaning = _EXIT_MEANING.get(message.status or 0, "failed")
            self.notify(
                f"sync pid {message.pid} ended: {meaning} (exit {message.status}); "
                f"output in {message.log_path}",
                severity="information" if message.status == 0 else "warning",
                timeout=8,
            )
        self.action_refresh()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.open_manifest(str(event.row_key.value))

    def watch_theme(self) -> None:
        if self.snapshot is not None and self.screen_stack:  # status colours follow the theme
            self.screen_stack[0].query_one(HistoryTable).show(self.snapshot.runs, force=True)

    # -- rendering -----------------------------------------------------------------------------

    def show(self, snapshot: Snapshot | None) -> None:
        """Render ``snapshot`` (``None``: the last one again, with the latest health and
        history)."""
        collected = self._collected = snapshot or self._collected
        if collected is None:
            return
        snapshot = collected if self.stored is None else collected.with_stored(self.stored)
        self.snapshot = snapshot
        if not self.screen_stack:
            # A worker's message can arrive while the app shuts down: nothing is left to draw on.
            return
        pid = self.sync.pid if self.sync is not None else None
        # The main screen, also while a question or a manifest is on top of it.
        main = self.screen_stack[0]
        main.query_one(StatusLine).show(snapshot, self.health, pid)
        problems = list(snapshot.problems)
        if self.health is not None and self.health.reachable is False:
            problems.insert(
                0,
                f"Qdrant at {self.health.target} is unreachable ({self.health.problem}); "
                f"retrying every {self.health_every_s:g}s; the panels read the state folder.",
            )
        main.query_one(Banner).show(problems)
        main.query_one(GpuPanel).show(snapshot)
        main.query_one(RunPanel).show(snapshot, pid)
        main.query_one(TrendPanel).show(snapshot)
        main.query_one(ClusterPanel).show(snapshot)
        main.query_one(HistoryTable).show(snapshot.runs)

    # -- actions -------------------------------------------------------------------------------

    def open_manifest(self, run_id: str) -> None:
        """Show the manifest of ``run_id`` as stored in the state folder, or its record in the
        runs collection when it ran on another host."""
        if self.snapshot is None:
            return
        path = summary_path(self.snapshot.state_dir, run_id)
        stored = self.snapshot.stored
        record = stored.record(run_id) if stored is not None else None
        if stored is not None and record is not None and not path.exists():
            text = json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=True)
            where = f"runs collection at {stored.target}"
            self.push_screen(ManifestScreen(f"run {run_id}", where, text))
            return
        try:
            text = json.dumps(json.loads(path.read_text(encoding="utf-8")), indent=2)
        except (OSError, ValueError) as exc:
            self.notify(f"manifest {path}: unreadable ({exc})", severity="error")
            return
        self.push_screen(ManifestScreen(f"run {run_id}", str(path), text))

    def action_toggle_sparse(self) -> None:
        if self.snapshot is None:
            return
        state_dir = self.snapshot.state_dir
        wanted = not self.snapshot.sparse.enabled
        word = "ON" if wanted else "OFF"

        def decided(yes: bool | None) -> None:
            if not yes:
                return
            try:
                state = load_runtime(state_dir)
            except ConfigError:  # unreadable: it holds only this switch, so write it afresh
                state = RuntimeState()
            state.sparse_enabled = wanted
            save_runtime(state_dir, state)
            self.notify(f"sparse is {word} for the next syncs")
            self.action_refresh()

        self.push_screen(
            ConfirmScreen(
                f"Turn sparse vectors {word} for the next syncs?\n"
                "A sync running now keeps the setting it started with."
            ),
            decided,
        )

    def action_start_sync(self) -> None:
        if self.snapshot is None or self._new_sync is None:
            return
        if self.sync is not None:
            pid = self.sync.pid
            self.notify(f"the sync started here (pid {pid}) still runs", severity="warning")
            return
        if self.snapshot.live and self.snapshot.progress is not None:
            self.notify(
                f"a sync is running already (pid {self.snapshot.progress.pid})", severity="warning"
            )
            return
        try:
            self.sync = self._new_sync()
        except ValueError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self.notify(f"starting a sync of {self.snapshot.source}; output in {self.sync.log_path}")
        self._watch_sync(self.sync)

    def action_cancel_sync(self) -> None:
        if self.snapshot is None:
            return
        mine = self.sync
        progress = self.snapshot.progress if self.snapshot.live else None
        stop: Callable[[], bool]
        if mine is not None and mine.running():
            question = f"Stop the sync started here (pid {mine.pid})?"
            stop = mine.stop
        elif progress is not None:
            question = f"Stop the sync running in process {progress.pid} (started elsewhere)?"
            stop = partial(stop_live_sync, progress)
        else:
            self.notify("no sync is running")
            return

        def decided(yes: bool | None) -> None:
            if not yes:
                return
            if stop():
                self.notify("stopping: queued writes finish, the run is recorded interrupted")
            else:
                self.notify("that sync has ended already", severity="warning")

        self.push_screen(
            ConfirmScreen(f"{question}\nQueued writes finish and the run is recorded interrupted."),
            decided,
        )

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

"""The read-only panels of the main screen; each renders the snapshot it is given."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Static

from tui import format as fmt
from tui.health import QdrantHealth
from tui.state import Snapshot

__all__ = ["Banner", "ClusterPanel", "GpuPanel", "RunPanel", "StatusLine", "TrendPanel"]


class StatusLine(Static):
    """One line: where the dashboard looks, and the sparse switch the next sync will use."""

    def show(
        self, snapshot: Snapshot, health: QdrantHealth | None, dashboard_pid: int | None
    ) -> None:
        sparse = snapshot.sparse
        text = Text.assemble(
            ("sparse ", "bold"),
            ("ON" if sparse.enabled else "OFF", "bold reverse"),
            f" for next syncs ({sparse.decided_by})",
            "  ·  ",
            ("qdrant ", "bold"),
            _qdrant_word(health),
            "  ·  ",
            ("collection ", "bold"),
            snapshot.collection,
        )
        if dashboard_pid is not None:
            text.append(f"  ·  started sync pid {dashboard_pid}")
        self.update(text)


def _qdrant_word(health: QdrantHealth | None) -> str:
    if health is None:
        return "checking…"
    if health.reachable is None:
        return "embedded"
    return "reachable" if health.reachable else "UNREACHABLE"


class Banner(Static):
    """Problems the operator must see (Qdrant down, unreadable files); hidden when none."""

    def show(self, problems: list[str]) -> None:
        self.display = bool(problems)
        self.update("\n".join(problems))


class GpuPanel(Static):
    """One row per GPU: memory as a bar, utilisation, and the lease on it (if any)."""

    rows: list[tuple[str, ...]]
    """What the table shows, cell by cell (for tests and screen readers alike)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.rows = []

    def show(self, snapshot: Snapshot) -> None:
        self.rows = _gpu_rows(snapshot)
        self.update(self._render_rows(snapshot))

    def _render_rows(self, snapshot: Snapshot) -> RenderableType:
        if not self.rows:
            return Text("No GPU found (NVML reports none): syncs run their models on the CPU.")
        table = Table(box=None, expand=True, padding=(0, 1), show_edge=False)
        table.add_column("GPU", no_wrap=True, overflow="ellipsis", max_width=14)
        table.add_column("VRAM GiB", no_wrap=True)
        table.add_column("Util", no_wrap=True, justify="right")
        table.add_column("Lease (held for; reserved)", ratio=1)
        for row in self.rows:
            table.add_row(*row)
        return table


def _gpu_rows(snapshot: Snapshot) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    seen = set()
    for info in snapshot.gpus:
        seen.add(info.index)
        share = info.used_bytes / info.total_bytes if info.total_bytes else None
        memory = f"{fmt.bar(share, 6)} {fmt.gib(info.used_bytes)}/{fmt.gib(info.total_bytes)}"
        util = fmt.DASH if info.utilisation_pct is None else f"{info.utilisation_pct}%"
        rows.append((f"{info.index} {info.name}", memory, util, _lease(snapshot, info.index)))
    for lease in snapshot.leases:  # held on a GPU the probe does not see (NVML gone?)
        if lease.device not in seen:
            name = f"{lease.device} {lease.device_name}"
            rows.append((name, fmt.DASH, fmt.DASH, _lease(snapshot, lease.device)))
    return rows


def _lease(snapshot: Snapshot, device: int) -> str:
    lease = snapshot.lease_on(device)
    if lease is None:
        return "free"
    held = fmt.duration(_seconds(snapshot, lease.started_at))
    return (
        f"pid {lease.pid} {lease.holder}, {held}\n"
        f"{lease.model or fmt.DASH}, {fmt.gib(lease.vram_reserved)} GiB"
    )


def _seconds(snapshot: Snapshot, iso: str) -> float | None:
    then = fmt.parse_time(iso)
    return None if then is None else max(0.0, (snapshot.taken_at - then).total_seconds())


class RunPanel(Static):
    """The sync running now (from its progress file), or the last one that ran."""

    def show(self, snapshot: Snapshot, dashboard_pid: int | None = None) -> None:
        self.border_title = _run_title(snapshot)
        self.update(_run_text(snapshot, dashboard_pid))


def _run_title(snapshot: Snapshot) -> str:
    """The panel's title, with where the running sync encodes when it says (a Ray run's
    cluster has a panel of its own)."""
    compute = snapshot.compute
    if compute is None:
        return "Current run"
    if compute.engine == "ray":
        return "Current run · ray"
    return f"Current run · local, {_plural(compute.workers, 'worker')}"


def _plural(number: int, word: str) -> str:
    return f"{number} {word}" if number == 1 else f"{number} {word}s"


def _run_text(snapshot: Snapshot, dashboard_pid: int | None) -> Text:
    progress = snapshot.progress
    if progress is None or not snapshot.live:
        text = Text("No sync running.", style="bold")
        if progress is not None:
            ended = progress.status if progress.status != "running" else "stopped (process gone)"
            text.append(
                f"\nlast: run {progress.run_id[:8]} {ended}\n"
                f"{fmt.count(progress.chunks_done)} chunks, "
                f"{fmt.ago(progress.updated_at, snapshot.taken_at)}"
            )
        if snapshot.source:
            text.append(f"\ng starts a sync of {snapshot.source}")
        else:
            text.append("\nno source.path configured")
        return text
    share = progress.bytes_done / progress.total_bytes if progress.total_bytes else None
    here = " (started here)" if progress.pid == dashboard_pid else ""
    lines = [
        Text.assemble(("run ", "bold"), f"{progress.run_id[:8]} · pid {progress.pid}{here}"),
        Text(
            f"{fmt.bar(share, 12)} {fmt.ratio(share)} of {fmt.megabytes(progress.total_bytes)}"
            if share is not None
            else f"{fmt.megabytes(progress.bytes_done)} read (size unknown)"
        ),
        Text(
            f"chunks {fmt.count(progress.chunks_done)} · {fmt.rate(progress.chunks_per_s)}/s · "
            f"ETA {fmt.duration(progress.eta_s)}"
        ),
        Text(f"batch {progress.batch_size} · dense {progress.dense_device or fmt.DASH}"),
        Text(
            f"sparse {progress.sparse_device or 'off'} · fallbacks {fmt.count(progress.fallbacks)}"
        ),
    ]
    return Text("\n").join(lines)


class ClusterPanel(Static):
    """A Ray run's cluster: nodes and workers in the title, one row per encoding actor (node,
    role, device, batch size, chunks, chunks/s); hidden unless a Ray run is live."""

    MAX_ROWS = 4
    """Actors listed (the run history below keeps its room); the rest are counted in one last
    line."""

    rows: list[tuple[str, ...]]
    """What the table shows, cell by cell (for tests and screen readers alike)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.rows = []

    def show(self, snapshot: Snapshot) -> None:
        compute = snapshot.compute
        self.display = compute is not None and compute.engine == "ray"
        if compute is None or not self.display:
            self.rows = []
            return
        nodes, workers = _plural(compute.nodes, "node"), _plural(compute.workers, "worker")
        self.border_title = f"Ray cluster · {nodes} · {workers}"
        self.rows = [
            (
                actor.node,
                actor.role,
                actor.device,
                fmt.count(actor.batch_size),
                fmt.count(actor.chunks),
                fmt.rate(actor.chunks_per_s),
            )
            for actor in snapshot.actors
        ]
        self.update(self._render_rows())

    def _render_rows(self) -> RenderableType:
        if not self.rows:
            return Text("No actor has reported yet.")
        table = Table(box=None, expand=True, padding=(0, 1), show_edge=False)
        table.add_column("Node", no_wrap=True, overflow="ellipsis", ratio=1)
        table.add_column("Role", no_wrap=True)
        table.add_column("Device", no_wrap=True)
        for label in ("Batch", "Chunks", "Chunks/s"):
            table.add_column(label, no_wrap=True, justify="right")
        for row in self.rows[: self.MAX_ROWS]:
            table.add_row(*row)
        left = len(self.rows) - self.MAX_ROWS
        if left > 0:
            table.add_row(Text(f"… {_plural(left, 'more actor')}", style="italic"))
        return table


class TrendPanel(Vertical):
    """Sparklines of the fallback ratio and throughput of the recent runs, newest on the right."""

    def compose(self) -> ComposeResult:
        yield Label(id="fallback-label")
        yield Static(id="fallback-chart", classes="chart")
        yield Label(id="rate-label")
        yield Static(id="rate-chart", classes="chart")

    def show(self, snapshot: Snapshot, runs: int = 30) -> None:
        recent = list(reversed(snapshot.runs[:runs]))  # oldest first: the newest is right-most
        ratios = [r.fallback_ratio for r in recent if r.fallback_ratio is not None]
        rates = [r.chunks_per_s for r in recent if r.chunks_per_s is not None]
        plural = "s" if len(recent) > 1 else ""
        self.border_title = f"Last {len(recent)} run{plural}" if recent else "Recent runs"
        self.query_one("#fallback-label", Label).update(
            _trend_label("sparse fallback", ratios, fmt.ratio, "sparse off in every run")
        )
        self.query_one("#rate-label", Label).update(
            _trend_label("chunks/s", rates, fmt.rate, "no run finished yet")
        )
        self._series = (ratios, rates)
        self._draw()

    def on_resize(self) -> None:
        self._draw()  # one cell per run: how many fit depends on the width

    def _draw(self) -> None:
        ratios, rates = getattr(self, "_series", ([], []))
        width = self.content_size.width
        # Fallbacks on a fixed 0-100% scale: a flat line at the bottom means none.
        self.query_one("#fallback-chart", Static).update(fmt.spark(ratios, width, top=1.0))
        self.query_one("#rate-chart", Static).update(fmt.spark(rates, width))


def _trend_label(
    name: str, values: list[float], show: Callable[[float | None], str], empty: str
) -> str:
    if not values:
        return f"{name}: {empty}"
    return f"{name} {show(values[-1])} (max {show(max(values))})"

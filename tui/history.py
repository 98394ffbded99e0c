"""The run history table: one row per recorded run, newest first; Enter opens its manifest.

Against a Qdrant server the history holds every host's runs, and a Host column tells them apart;
with the embedded store every run listed is this host's, and the column is left out.
"""

from __future__ import annotations

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from tui import format as fmt
from tui.state import RunRow

__all__ = ["COLUMNS", "HOST_COLUMN", "HistoryTable", "row_cells"]

COLUMNS = (
    ("started", "Started UTC"),
    ("took", "Took"),
    ("status", "Status"),
    ("chunks", "Chunks"),
    ("encoded", "Enc"),
    ("deleted", "Del"),
    ("fallback", "Fallbk"),
    ("device", "Device"),
    ("schema", "Ver"),
)

HOST_COLUMN = ("host", "Host")
"""Shown after the status when runs of several hosts are listed."""

_STATUS = 2
"""Where the status cell is; the host cell follows it."""

_STATUS_STYLE = {
    "succeeded": "text-success",
    "failed": "text-error",
    "interrupted": "text-warning",
    "running": "text-accent",
}


def row_cells(run: RunRow, *, host: bool = False) -> tuple[str, ...]:
    """The cells of ``run``'s row, as plain text; with ``host``, its host's after the status."""
    cells = (
        fmt.stamp(run.started_at),
        fmt.duration(run.duration_s),
        run.status,
        fmt.count(run.chunks),
        fmt.count(run.encoded),
        fmt.count(run.deleted),
        fmt.ratio(run.fallback_ratio) if run.fallback_ratio is not None else "off",
        run.device,
        run.schema_version,
    )
    if not host:
        return cells
    return (*cells[: _STATUS + 1], run.host or fmt.DASH, *cells[_STATUS + 1 :])


class HistoryTable(DataTable[Text | str]):
    """Recent runs; the row key is the run id.

    Args:
        hosts: Whether to show each run's host (runs of several hosts are listed).
    """

    def __init__(self, *, hosts: bool = False, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.hosts = hosts
        self._shown: tuple[RunRow, ...] = ()

    def on_mount(self) -> None:
        columns = list(COLUMNS)
        if self.hosts:
            columns.insert(_STATUS + 1, HOST_COLUMN)
        for key, label in columns:
            self.add_column(label, key=key)

    def show(self, runs: tuple[RunRow, ...], *, force: bool = False) -> None:
        """Replace the rows when the runs changed, keeping the cursor on the same run."""
        if runs == self._shown and not force:
            return
        selected = self.selected_run_id
        self._shown = runs
        self.clear()
        for run in runs:
            cells: list[Text | str] = list(row_cells(run, host=self.hosts))
            style = self.app.theme_variables.get(_STATUS_STYLE.get(run.status, ""), "")
            cells[_STATUS] = Text(run.status, style=f"bold {style}".strip())
            self.add_row(*cells, key=run.run_id)
        if selected is not None and selected in {r.run_id for r in runs}:
            self.move_cursor(row=self.get_row_index(selected))

    @property
    def selected_run_id(self) -> str | None:
        """The run under the cursor."""
        if not self._shown or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        return str(self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value)

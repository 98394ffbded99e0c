"""The run history table: one row per recorded run, newest first; Enter opens its manifest."""

from __future__ import annotations

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from tui import format as fmt
from tui.state import RunRow

__all__ = ["COLUMNS", "HistoryTable", "row_cells"]

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

_STATUS_STYLE = {
    "succeeded": "text-success",
    "failed": "text-error",
    "interrupted": "text-warning",
    "running": "text-accent",
}


def row_cells(run: RunRow) -> tuple[str, ...]:
    """The cells of ``run``'s row, as plain text."""
    return (
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


class HistoryTable(DataTable[Text | str]):
    """Recent runs; the row key is the run id."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self._shown: tuple[RunRow, ...] = ()

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def show(self, runs: tuple[RunRow, ...], *, force: bool = False) -> None:
        """Replace the rows when the runs changed, keeping the cursor on the same run."""
        if runs == self._shown and not force:
            return
        selected = self.selected_run_id
        self._shown = runs
        self.clear()
        for run in runs:
            cells: list[Text | str] = list(row_cells(run))
            style = self.app.theme_variables.get(_STATUS_STYLE.get(run.status, ""), "")
            cells[2] = Text(run.status, style=f"bold {style}".strip())
            self.add_row(*cells, key=run.run_id)
        if selected is not None and selected in {r.run_id for r in runs}:
            self.move_cursor(row=self.get_row_index(selected))

    @property
    def selected_run_id(self) -> str | None:
        """The run under the cursor."""
        if not self._shown or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        return str(self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value)

"""Screenshots of the main screen over a fixed, scripted state (pytest-textual-snapshot).

Update them after a deliberate change of the layout with ``pytest tests/tui --snapshot-update``
and look at the SVGs under ``__snapshots__`` before committing.
"""

from __future__ import annotations

from textual.pilot import Pilot

from tests.tui.scripted import BUSY, IDLE_NO_GPU
from tui.app import DashboardApp
from tui.health import QdrantHealth
from tui.state import Snapshot

DOWN = QdrantHealth(
    "http://qdrant.internal:6333",
    False,
    "reach Qdrant at http://qdrant.internal:6333: no answer from Qdrant (Connection refused)",
)


def scripted(snapshot: Snapshot, health: QdrantHealth | None = None) -> DashboardApp:
    # Refreshes keep coming back with the same state: the picture cannot depend on timing.
    return DashboardApp(
        lambda: snapshot,
        check_health=(lambda: health) if health is not None else None,
        refresh_s=60,
        health_every_s=60,
    )


async def shown(pilot: Pilot) -> None:
    app = pilot.app
    assert isinstance(app, DashboardApp)
    while app.snapshot is None or app.health is None:  # both workers have answered
        await pilot.pause(0.05)
    await pilot.pause()


def test_busy_host_dark_80x24(snap_compare) -> None:
    assert snap_compare(scripted(BUSY), terminal_size=(80, 24), run_before=shown)


def test_busy_host_light_80x24(snap_compare) -> None:
    async def light(pilot: Pilot) -> None:
        await shown(pilot)
        await pilot.press("d")
        await pilot.pause()

    assert snap_compare(scripted(BUSY), terminal_size=(80, 24), run_before=light)


def test_cpu_host_with_qdrant_down_100x30(snap_compare) -> None:
    assert snap_compare(scripted(IDLE_NO_GPU, DOWN), terminal_size=(100, 30), run_before=shown)


def test_confirming_the_sparse_switch(snap_compare) -> None:
    async def asked(pilot: Pilot) -> None:
        await shown(pilot)
        await pilot.press("s")
        await pilot.pause()

    assert snap_compare(scripted(BUSY), terminal_size=(80, 24), run_before=asked)

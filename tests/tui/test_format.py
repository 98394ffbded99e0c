"""Renderings of figures: durations, bars, sparklines."""

from __future__ import annotations

from datetime import UTC, datetime

from tui import format as fmt


def test_durations_and_ages() -> None:
    assert [fmt.duration(s) for s in (None, 4.24, 185, 7620)] == ["—", "4.2s", "3m05s", "2h07m"]
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert fmt.ago("2026-03-01T11:55:00+00:00", now) == "5m00s ago"
    assert fmt.ago("not a time", now) == "—"
    assert fmt.stamp("2026-03-01T11:55:07.123+00:00") == "03-01 11:55"


def test_bars_fill_by_eighths_and_stay_in_bounds() -> None:
    assert fmt.bar(0.5, 4) == "██░░"
    assert fmt.bar(1 / 16, 2) == "▏░"
    assert fmt.bar(2.0, 3) == "███" and fmt.bar(-1, 3) == "░░░" and fmt.bar(None, 2) == "░░"


def test_sparklines_keep_zeros_flat_and_show_the_newest_values() -> None:
    assert fmt.spark([0.0, 0.0, 0.0], 10, top=1.0) == "▁▁▁"
    assert fmt.spark([0.0, 0.5, 1.0], 10, top=1.0) == "▁▅█"
    assert fmt.spark([1.0, 2.0, 4.0], 2) == "▅█"  # the last two, scaled to their largest
    assert fmt.spark([], 5) == ""

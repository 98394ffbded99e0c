"""Plain-text renderings of figures for the dashboard: durations, sizes, rates, bars, times.

Every function takes what it needs (a "now" included) and returns a string, so the screen depends on
no clock and tests can script it.
"""

from __future__ import annotations

from datetime import datetime

# Timestamps as the connector writes them (the dashboard shows manifests and progress files).
from connector.runs.manifest import parse_time

__all__ = [
    "DASH",
    "ago",
    "bar",
    "clock",
    "count",
    "duration",
    "gib",
    "megabytes",
    "parse_time",
    "rate",
    "ratio",
    "spark",
    "stamp",
]

DASH = "—"


def duration(seconds: float | None) -> str:
    """``4.2s``, ``3m05s``, ``2h07m``; a dash when unknown."""
    if seconds is None or seconds < 0:
        return DASH
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def ago(iso: str | None, now: datetime) -> str:
    """How long before ``now`` the time ``iso`` was, e.g. ``5m10s ago``."""
    then = parse_time(iso)
    if then is None:
        return DASH
    return f"{duration(max(0.0, (now - then).total_seconds()))} ago"


def stamp(iso: str | None, *, seconds: bool = False) -> str:
    """``11-23 15:37`` (UTC, like the manifests); a dash when unknown."""
    value = parse_time(iso)
    if value is None:
        return DASH
    return value.strftime("%m-%d %H:%M:%S" if seconds else "%m-%d %H:%M")


def clock(iso: str | None) -> str:
    """``15:37:02`` (UTC); a dash when unknown."""
    value = parse_time(iso)
    return DASH if value is None else value.strftime("%H:%M:%S")


def count(value: int | None) -> str:
    return DASH if value is None else f"{value:,}"


def rate(value: float | None) -> str:
    """A rate such as chunks per second, ``1,205.3``; a dash when unknown."""
    return DASH if value is None else f"{value:,.1f}"


def ratio(value: float | None) -> str:
    """A share as a percentage, ``12.5%``; a dash when there is none."""
    return DASH if value is None else f"{value * 100:.1f}%"


def gib(value: int | None) -> str:
    return DASH if value is None else f"{value / (1 << 30):.1f}"


def megabytes(value: int | None) -> str:
    return DASH if value is None else f"{value / 1_000_000:,.1f} MB"


def bar(fraction: float | None, width: int) -> str:
    """A bar of ``width`` cells, filled to ``fraction`` (eighths of a cell)."""
    if width <= 0:
        return ""
    if fraction is None:
        return "░" * width
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part].strip() if part else ""
    filled = "█" * full + partial
    return filled + "░" * (width - len(filled))


_TICKS = "▁▂▃▄▅▆▇█"


def spark(values: list[float], width: int, top: float | None = None) -> str:
    """The last ``width`` values as a sparkline, one cell each, on a scale from 0 to ``top``
    (default: their largest), so that a run of zeros stays flat at the bottom."""
    shown = values[-width:] if width > 0 else []
    high = top if top is not None else max(shown, default=0.0)
    if high <= 0:
        return _TICKS[0] * len(shown)
    last = len(_TICKS) - 1
    return "".join(_TICKS[round(max(0.0, min(1.0, v / high)) * last)] for v in shown)

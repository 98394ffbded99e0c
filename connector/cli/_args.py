"""What describes a command: its parser, the settings its flags override, and how it runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.settings import Settings
    from connector.telemetry import Telemetry

__all__ = ["Command", "Overrides", "Subparsers"]

Subparsers = argparse._SubParsersAction  # argparse has no public name for it
Overrides = dict[str, dict[str, Any]]
"""Settings section → key → value of a flag (``None``: the flag was not given)."""


def _no_overrides(args: argparse.Namespace) -> Overrides:
    return {}


@dataclass(frozen=True, slots=True)
class Command:
    """One ``connector`` subcommand.

    Attributes:
        name: What the user types.
        add_parser: Adds its parser (with the common options) to the subcommands.
        run: Runs it with the settings and the process's telemetry; returns the exit status.
        run_bare: Instead of ``run``, for a command that must work beside a broken config: runs
            it with its arguments alone.
        overrides: Its flags as settings (flags beat environment and file).
        full_screen: It owns the terminal: no log lines on stderr, no telemetry set-up.
    """

    name: str
    add_parser: Callable[[Subparsers, argparse.ArgumentParser], None]
    run: Callable[[Settings, argparse.Namespace, Telemetry], int] | None = None
    run_bare: Callable[[argparse.Namespace], int] | None = None
    overrides: Callable[[argparse.Namespace], Overrides] = _no_overrides
    full_screen: bool = False

    def __post_init__(self) -> None:
        if (self.run is None) == (self.run_bare is None):
            raise TypeError(f"command {self.name!r}: give exactly one of run and run_bare")

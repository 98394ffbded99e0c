"""``connector tui``: the operator dashboard (full screen; it logs to a file)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from connector.cli._args import Subparsers

if TYPE_CHECKING:
    from connector.settings import Settings

__all__ = ["LOGS_TO_STDERR", "NAME", "NEEDS_SETTINGS", "add_parser", "overrides", "run"]

NAME = "tui"
NEEDS_SETTINGS = True
LOGS_TO_STDERR = False


def add_parser(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    commands.add_parser(
        NAME, parents=[common], help="open the operator dashboard (runs, GPUs, sparse switch)"
    )


def overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    return {}


def run(settings: Settings, args: argparse.Namespace) -> int:
    # Textual is imported only now: every other command answers without it.
    from tui.launch import run_dashboard

    return run_dashboard(settings, args.config)

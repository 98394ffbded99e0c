"""``connector tui``: the operator dashboard (full screen; it logs to a file)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from connector.cli._args import Command, Subparsers

if TYPE_CHECKING:
    from connector.settings import Settings
    from connector.telemetry import Telemetry

__all__ = ["COMMAND"]


def _add_parser(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    commands.add_parser(
        "tui", parents=[common], help="open the operator dashboard (runs, GPUs, sparse switch)"
    )


def _run(settings: Settings, args: argparse.Namespace, telemetry: Telemetry) -> int:
    # Textual is imported only now: every other command answers without it.
    from tui.launch import run_dashboard

    return run_dashboard(settings, args.config)


COMMAND = Command("tui", _add_parser, run=_run, full_screen=True)

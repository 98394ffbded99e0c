"""``connector sparse on|off|status``: the persisted switch every sync reads at start."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from connector.cli._args import Command, Subparsers

if TYPE_CHECKING:
    from connector.settings import Settings
    from connector.telemetry import Telemetry

__all__ = ["COMMAND"]


def _add_parser(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    sparse = commands.add_parser(
        "sparse", parents=[common], help="switch sparse vectors on or off for the next syncs"
    )
    sparse.add_argument("state", choices=["on", "off", "status"])


def _run(settings: Settings, args: argparse.Namespace, telemetry: Telemetry) -> int:
    from connector.switches import load_runtime, save_runtime, sparse_enabled

    state = load_runtime(settings.state_dir)
    if args.state != "status":
        state.sparse_enabled = args.state == "on"
        state = save_runtime(settings.state_dir, state)
    enabled, decided_by = sparse_enabled(settings.state_dir, settings.sparse.enabled, None)
    if args.json:
        print(json.dumps({"sparse_enabled": enabled, "decided_by": decided_by}))
    else:
        print(f"sparse is {'on' if enabled else 'off'} for the next syncs ({decided_by})")
    return 0


COMMAND = Command("sparse", _add_parser, run=_run)

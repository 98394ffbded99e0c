"""``connector schema``: the JSON schema of the run manifest (needs no settings)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from connector.cli._args import Subparsers

__all__ = ["LOGS_TO_STDERR", "NAME", "NEEDS_SETTINGS", "add_parser", "overrides", "run"]

NAME = "schema"
NEEDS_SETTINGS = False
LOGS_TO_STDERR = True


def add_parser(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    commands.add_parser(NAME, help="print the JSON schema of processing_summary.json")


def overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    return {}


def run(settings: None, args: argparse.Namespace) -> int:
    from connector.runs import summary_json_schema

    print(json.dumps(summary_json_schema(), indent=2))
    return 0

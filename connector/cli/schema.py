"""``connector schema``: the JSON schema of the run manifest (needs no settings)."""

from __future__ import annotations

import argparse
import json

from connector.cli._args import Command, Subparsers

__all__ = ["COMMAND"]


def _add_parser(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    commands.add_parser("schema", help="print the JSON schema of processing_summary.json")


def _run(args: argparse.Namespace) -> int:
    from connector.runs import summary_json_schema

    print(json.dumps(summary_json_schema(), indent=2))
    return 0


COMMAND = Command("schema", _add_parser, run_bare=_run)

"""The ``connector`` command. Each subcommand lives in a module of its own here, which adds its
parser and runs it; this module reads the settings once and maps errors to exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from connector import __version__
from connector.cli import migrate, runs, schema, search, sparse, sync, tui
from connector.errors import ConnectorError
from connector.redact import RedactingFilter, redact

__all__ = ["COMMANDS", "main"]

COMMANDS = {
    module.COMMAND.name: module.COMMAND
    for module in (sync, search, sparse, runs, migrate, schema, tui)
}
"""Command name → what it is and how it runs."""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="PATH", help="TOML settings file (default ./connector.toml)"
    )
    common.add_argument(
        "--collection", metavar="NAME", help="Qdrant collection (qdrant.collection)"
    )
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")

    parser = argparse.ArgumentParser(
        prog="connector", description="Embed chunks of text dense and sparse into Qdrant."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(commands, common)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """CLI flags as a nested settings dict (flags beat environment and file)."""
    out: dict[str, Any] = {}
    if args.collection is not None:
        out["qdrant"] = {"collection": args.collection}
    for section, values in COMMANDS[args.command].overrides(args).items():
        values = {key: value for key, value in values.items() if value is not None}
        if values:
            out.setdefault(section, {}).update(values)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    command = COMMANDS[args.command]
    try:
        if command.run_bare is not None:  # works beside a broken config
            return command.run_bare(args)
        assert command.run is not None
        from connector.settings import load_settings
        from connector.telemetry import Telemetry, setup_telemetry

        settings = load_settings(args.config, _overrides(args))
        if command.full_screen:  # it sets up its own logging, and no telemetry
            return command.run(settings, args, Telemetry())
        _setup_logging(settings.log_level)
        telemetry = setup_telemetry(settings.telemetry)
        try:
            return command.run(settings, args, telemetry)
        finally:
            telemetry.shutdown()
    except ConnectorError as exc:
        print(f"connector: error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except SystemExit as exc:
        if exc.code != 128 + signal.SIGTERM:
            raise
        print("connector: stopped by SIGTERM; the run is marked interrupted", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("connector: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`connector search ... | head`): not an error of ours. Point
        # stdout at nothing so the interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    # Model libraries chatter at INFO/WARNING about things the operator cannot act on.
    for noisy in ("sentence_transformers", "transformers", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


if __name__ == "__main__":
    sys.exit(main())

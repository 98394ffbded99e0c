"""``python -m tui [--config PATH] [--collection NAME]``: the same as ``connector tui``."""

from __future__ import annotations

import sys

from connector.cli import main

if __name__ == "__main__":
    sys.exit(main(["tui", *sys.argv[1:]]))

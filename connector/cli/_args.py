"""What every command module shares: the type of argparse's sub-parser collection."""

from __future__ import annotations

import argparse

__all__ = ["Subparsers"]

Subparsers = argparse._SubParsersAction  # argparse has no public name for it

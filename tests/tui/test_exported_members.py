"""The dashboard's public surface: every exported name exists."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "tui",
    "tui.app",
    "tui.control",
    "tui.format",
    "tui.health",
    "tui.history",
    "tui.launch",
    "tui.messages",
    "tui.panels",
    "tui.screens",
    "tui.state",
]


@pytest.mark.parametrize("name", MODULES)
def test_every_exported_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__, f"{name} exports nothing"
    for member in module.__all__:
        assert getattr(module, member) is not None, f"{name}.{member}"


def test_connector_help_does_not_import_textual() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from connector.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'textual' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)

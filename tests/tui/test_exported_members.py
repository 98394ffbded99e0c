"""The dashboard's public surface: each public module's ``__all__`` is exactly its public names
(see ``tests/surface.py`` for the rule)."""

from __future__ import annotations

import importlib

import pytest

from tests.surface import all_modules, public_modules, surface_problems


@pytest.mark.parametrize("name", public_modules("tui"))
def test_all_lists_exactly_the_public_names(name: str) -> None:
    assert surface_problems(name) == []


@pytest.mark.parametrize("name", all_modules("tui"))
def test_every_exported_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is None or exported, f"{name} exports nothing"
    for member in exported or []:
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

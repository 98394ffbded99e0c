"""Running the ``connector`` command in this process, for tests."""

from __future__ import annotations

import pytest

from connector.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``connector ARGV``."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err

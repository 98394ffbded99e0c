"""The dashboard stays out of the other commands' way."""

from __future__ import annotations

import subprocess
import sys


def test_connector_help_does_not_import_textual() -> None:
    code = (
        "import sys\n"
        "from connector.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'textual' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)

"""The README's test command is what CI runs first."""

from __future__ import annotations

import re

from tests.paths import REPO


def test_the_readme_test_command_is_the_first_step_of_ci() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"Install and run the tests.*?\n```sh\n(.*?)\n```", readme, re.DOTALL)
    assert len(blocks) == 1, "the README's test section has one sh block"
    steps = [
        line
        for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert steps[0] == blocks[0]

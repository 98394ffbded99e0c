"""Plug-in dense encoders the Ray tests configure (actors build their models from settings)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from connector.dense_plugins import RateEncoder


class DyingEncoder(RateEncoder):
    """A :class:`RateEncoder` whose process dies at its ``die_at``-th call, once per marker
    file: the first actor to get there dies (as a node lost mid-run would take it), and so does
    every later one until ``deaths`` processes died.

    Args:
        marker: A folder where each death leaves a file.
        die_at: The call that kills the process.
        deaths: How many processes die in all.
    """

    def __init__(self, marker: str, die_at: int = 2, deaths: int = 1, dim: int = 16) -> None:
        super().__init__(dim=dim)
        self.marker = Path(marker)
        self.die_at = die_at
        self.deaths = deaths
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        if self.calls == self.die_at:
            self.marker.mkdir(parents=True, exist_ok=True)
            # Each death claims its file atomically: two actors at their fatal call at once
            # cannot both take the last one.
            for death in range(self.deaths):
                try:
                    os.close(os.open(self.marker / f"death-{death}", os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    continue
                os._exit(1)
        return super().encode(texts)

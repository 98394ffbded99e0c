"""One sync, from a source's chunks to acknowledged writes: the syncer, its stages, its progress."""

from __future__ import annotations

from connector.pipeline.progress import NULL_PROGRESS, NullProgress, Progress, TerminalProgress
from connector.pipeline.stages import DenseStage
from connector.pipeline.syncer import SparseTarget, Syncer

__all__ = [
    "NULL_PROGRESS",
    "DenseStage",
    "NullProgress",
    "Progress",
    "SparseTarget",
    "Syncer",
    "TerminalProgress",
]

"""Create the chunk collection (behind an alias) and the runs collection, with payload indexes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connector.store.migrator import MigrationContext


def apply(ctx: MigrationContext) -> None:
    # A collection made by an earlier version (no alias, no record) keeps its points: it only
    # gains what it lacks.
    if not ctx.exists():
        ctx.create_chunk_collection()
    ctx.ensure_chunk_indexes()
    ctx.ensure_runs_collection()

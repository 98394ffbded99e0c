"""Add the configured sparse named vector to a collection created without it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connector.store.migrator import MigrationContext


def apply(ctx: MigrationContext) -> None:
    # `create_vector_name` adds it in place: stored points keep their dense vectors and payload,
    # and the next sync with sparse on computes only the sparse vectors.
    ctx.add_missing_sparse_vectors()

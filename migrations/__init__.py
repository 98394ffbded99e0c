"""Numbered schema migrations of the connector's collections (applied by `connector migrate`).

Each ``NNNN_name.py`` brings a chunk collection from schema version ``NNNN - 1`` to ``NNNN``: its
docstring's first line describes it, and ``apply(ctx)`` does it through a
:class:`connector.store.migrator.MigrationContext`. A migration checks before it changes, so
running it on a collection that already has its change does nothing.
"""

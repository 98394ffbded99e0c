"""The connector's exceptions, one tree rooted at :class:`ConnectorError`.

::

    ConnectorError                 every error the connector raises on purpose
    ├── ConfigError                a setting is missing or has a bad value        (terminal)
    ├── SourceError                the source cannot be read or holds bad input    (terminal)
    │   ├── InvalidRecord          one record is malformed (skipped unless strict) (terminal)
    │   └── SourceUnavailable      the source could not be reached in time         (transient)
    ├── ModelError                 a model cannot be found, loaded or run          (terminal)
    ├── GpuLeaseUnavailable        no GPU could be leased in time                  (transient)
    ├── ComputeError               the Ray cluster is unusable or lost the run's actors (terminal)
    ├── SyncInProgress             another run holds the source's sync lease       (transient)
    ├── SinkError                  Qdrant refused or failed a request              (terminal)
    │   ├── SinkUnavailable        Qdrant timed out, dropped the connection, 5xx   (transient)
    │   ├── CollectionMismatch     the collection's layout does not fit the config (terminal)
    │   └── SchemaOutdated         the collection's schema is behind; run migrations (terminal)
    └── UnsafeDelete               a run would delete more than it may              (terminal)

Every class is also marked :class:`TransientError` or :class:`TerminalError`, so callers decide
between retrying and stopping by type, never by reading messages.
"""

from __future__ import annotations

import signal

__all__ = [
    "CollectionMismatch",
    "ComputeError",
    "ConfigError",
    "ConnectorError",
    "GpuLeaseUnavailable",
    "InvalidRecord",
    "ModelError",
    "SchemaOutdated",
    "SinkError",
    "SinkUnavailable",
    "SourceError",
    "SourceUnavailable",
    "SyncInProgress",
    "TerminalError",
    "TransientError",
    "UnsafeDelete",
    "describe_failure",
]


class ConnectorError(Exception):
    """Root of every error the connector raises on purpose."""


class TransientError(ConnectorError):
    """An error that may go away when the same request is tried again."""


class TerminalError(ConnectorError):
    """An error that trying again will not fix."""


class ConfigError(TerminalError):
    """A setting is missing or has a bad value; the message names the key."""


class SourceError(TerminalError):
    """The source cannot be read or holds bad input; the message names file and line, or URL."""

    def __init__(self, location: str, problem: str) -> None:
        self.location = location
        self.problem = problem
        super().__init__(f"{location}: {problem}")


class InvalidRecord(SourceError):
    """One record of the source is malformed; a sync skips it and reports it unless strict.

    Attributes:
        kind: A short, stable name of the problem (``invalid_json``, ``empty_text``, ...), used
            to count skipped records by reason.
        chunk_id: The record's id when it could be read, so that its stored point is kept.
    """

    def __init__(
        self, location: str, problem: str, *, kind: str, chunk_id: str | None = None
    ) -> None:
        super().__init__(location, problem)
        self.kind = kind
        self.chunk_id = chunk_id


class SourceUnavailable(SourceError, TransientError):
    """The source could not be reached (connection refused, timeout, server error)."""


class ModelError(TerminalError):
    """A model cannot be found, loaded or run."""


class GpuLeaseUnavailable(TransientError):
    """No GPU could be leased (none present, or all busy past the timeout)."""


class ComputeError(TerminalError):
    """The Ray cluster cannot be used for the run: it cannot be reached, a node runs other
    models, or an actor died more often than it may be restarted."""


class SyncInProgress(TransientError):
    """Another run holds the lease on (collection, source): it syncs that source now, or did
    until lately and its lease has not lapsed yet; or this run lost its lease to another."""


class SinkError(TerminalError):
    """Qdrant refused or failed a request."""


class SinkUnavailable(SinkError, TransientError):
    """Qdrant timed out, dropped the connection, or answered with a server error."""


class CollectionMismatch(SinkError):
    """The collection exists but its vectors do not fit the configured models."""


class SchemaOutdated(SinkError):
    """The collection's schema version is behind the connector's; `connector migrate` fixes it."""


class UnsafeDelete(TerminalError):
    """A run would delete points it has no right to delete (an empty read, say)."""


def describe_failure(exc: BaseException) -> str:
    """Why a run ended early, for its manifest: the connector's own message, else the type only.

    A foreign exception's message may quote its input (chunk text); the connector's messages name
    files, lines and settings only.
    """
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, SystemExit):
        if exc.code == 128 + signal.SIGTERM:  # how `connector sync` turns SIGTERM into an exit
            return "stopped by SIGTERM"
        return f"stopped (exit status {exc.code})"
    if isinstance(exc, ConnectorError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__} (details in the log)"

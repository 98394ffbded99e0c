"""The run history of every host, read from the runs collection on the configured Qdrant server.

Against a server, every sync records its run there, whichever host ran it; the state folder holds
only this host's manifests. The dashboard reads the newest runs in a worker of its own, as often as
it checks the server, and merges them into its snapshot (:meth:`tui.state.Snapshot.with_stored`).
With the embedded store there is nothing to read here: a running sync holds its folder, and every
run in it is this host's, in the manifests already.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from connector.redact import register_secret
from connector.runs.manifest import ProcessingSummary
from connector.settings import Settings
from tui.health import failure, quick

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

__all__ = ["RunsReader", "StoredRuns"]


@dataclass(frozen=True, slots=True)
class StoredRuns:
    """One read of the runs collection."""

    target: str
    """The server URL (never an API key)."""
    limit: int
    """How many runs the read asked for: it holds the newest ``limit`` runs of every host."""
    summaries: tuple[ProcessingSummary, ...] = ()
    """The newest runs, newest first."""
    problem: str | None = None
    """Why the collection could not be read (then ``summaries`` is empty)."""

    def record(self, run_id: str) -> ProcessingSummary | None:
        """The record of ``run_id``, when this read listed it."""
        return next((s for s in self.summaries if s.run.id == run_id), None)


class RunsReader:
    """Reads the newest runs of the runs collection; never raises.

    Args:
        settings: The connector's settings, with ``qdrant.url`` set.
        client: The client to read with (a test passes a local-mode one standing for the
            server; it stays open). Default: a client of the configured server per read, with a
            short timeout and no retries (the next read is the retry).
        limit: How many runs to read.
    """

    def __init__(
        self, settings: Settings, *, client: QdrantClient | None = None, limit: int = 50
    ) -> None:
        if settings.qdrant.url is None:
            raise ValueError("the runs collection is read from a server: qdrant.url is not set")
        self.settings = settings
        self.target = settings.qdrant.url
        self.client = client
        self.limit = limit
        api_key = settings.qdrant.api_key
        register_secret(api_key.get_secret_value() if api_key is not None else None)

    def read(self) -> StoredRuns:
        """The newest runs; a :class:`StoredRuns` with the problem when the server does not
        answer, refuses, or holds no readable runs collection."""
        from connector.runs import RunStore
        from connector.wiring import open_store

        try:
            store = open_store(quick(self.settings), client=self.client)
            try:
                runs = RunStore(store, self.settings.qdrant.runs_collection)
                summaries = tuple(runs.latest(self.limit))
            finally:
                if self.client is None:  # a client passed in is its owner's to close
                    store.close()
        except Exception as exc:  # whatever the client raises, the dashboard stays up
            return StoredRuns(self.target, self.limit, problem=failure(exc))
        return StoredRuns(self.target, self.limit, summaries)

"""Whether the configured Qdrant server answers, asked from a background worker.

With no ``qdrant.url`` the connector runs Qdrant embedded in the state folder, which a running sync
holds open: the dashboard does not open it, and there is nothing to check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from connector.errors import ConnectorError
from connector.redact import redact
from connector.settings import Settings

__all__ = ["CHECK_TIMEOUT_S", "QdrantHealth", "check_qdrant", "failure", "quick"]

CHECK_TIMEOUT_S = 3.0
"""Longest wait for the server's answer (the configured request timeout may be much longer)."""


@dataclass(frozen=True, slots=True)
class QdrantHealth:
    """The answer of one check."""

    target: str
    """The server URL, or ``embedded`` (never an API key)."""
    reachable: bool | None
    """``None``: embedded, not checked."""
    problem: str | None = None
    checked_at: datetime | None = None


def check_qdrant(settings: Settings) -> QdrantHealth:
    """Ask the configured server for its collections (the same client code a sync uses).

    Never raises for a server that is down, refuses the key or times out: that is the answer.
    """
    from connector.store import Store, make_client

    url = settings.qdrant.url
    if url is None:
        return QdrantHealth(target="embedded", reachable=None)
    now = datetime.now(UTC)
    try:
        store = Store(make_client(quick(settings)))
        try:
            store.ping(f"reach Qdrant at {url}")
        finally:
            store.close()
    except Exception as exc:  # whatever the client raises, the dashboard stays up
        return QdrantHealth(url, False, failure(exc), now)
    return QdrantHealth(url, True, None, now)


def quick(settings: Settings) -> Settings:
    """``settings`` for the dashboard's own requests: a short timeout and no retries (it asks
    again a few seconds later anyway, and an answer that is late is no use on the screen)."""
    qdrant = settings.qdrant.model_copy(
        update={"timeout_s": min(settings.qdrant.timeout_s, CHECK_TIMEOUT_S), "retries": 0}
    )
    return settings.model_copy(update={"qdrant": qdrant})


def failure(exc: Exception) -> str:
    """What went wrong, for the screen: the connector's message with secrets masked; for any
    other error only its type (a client's message may carry request details)."""
    return redact(str(exc)) if isinstance(exc, ConnectorError) else type(exc).__name__

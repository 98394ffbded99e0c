"""The Qdrant client of the configured store, and its errors in the connector's words.

The same code serves the embedded mode (a local folder) and a Qdrant server (URL, API key,
optional gRPC): only the client's construction differs.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from connector.errors import ConnectorError, SinkError, SinkUnavailable
from connector.redact import register_secret

if TYPE_CHECKING:
    from connector.settings import Settings
    from connector.store.edge import EdgeClient

__all__ = ["make_client", "translate_errors"]

log = logging.getLogger(__name__)


def make_client(settings: Settings) -> QdrantClient | EdgeClient:
    """A client for the configured Qdrant: a server when ``qdrant.url`` is set, else embedded
    (qdrant-client's local mode, or Qdrant's engine in-process when ``qdrant.engine = "edge"``).

    Raises:
        SinkError: The embedded folder is held by another process.
    """
    q = settings.qdrant
    with translate_errors("open Qdrant"):
        if q.url:
            register_secret(q.api_key.get_secret_value() if q.api_key else None)
            if q.api_key and q.url.startswith("http://"):
                log.warning("the Qdrant API key is sent over plain http to %s", q.url)
            with warnings.catch_warnings():
                # Said once above, in our words; the client's own warning would repeat it.
                warnings.filterwarnings("ignore", "Api key is used with an insecure connection")
                return QdrantClient(
                    url=q.url,
                    api_key=q.api_key.get_secret_value() if q.api_key else None,
                    prefer_grpc=q.prefer_grpc,
                    grpc_port=q.grpc_port,
                    timeout=int(q.timeout_s),
                    # Its version probe runs in a thread that dumps a traceback when the server
                    # is down; the first real request reports that better.
                    check_compatibility=False,
                )
        path = settings.qdrant_path
        path.mkdir(parents=True, exist_ok=True)
        if q.engine == "edge":
            from connector.store.edge import EdgeClient

            return EdgeClient(path)
        return QdrantClient(path=str(path))


@contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Turn qdrant-client, httpx and gRPC errors into the connector's own."""
    try:
        yield
    except ConnectorError:
        raise
    except UnexpectedResponse as exc:
        status = exc.status_code or 0
        detail = (
            _short(exc.content.decode("utf-8", "replace")) if exc.content else exc.reason_phrase
        )
        if status >= 500 or status == 429:
            raise SinkUnavailable(f"{action}: Qdrant answered HTTP {status}: {detail}") from exc
        raise SinkError(f"{action}: Qdrant answered HTTP {status}: {detail}") from exc
    except ResponseHandlingException as exc:
        raise SinkUnavailable(f"{action}: no answer from Qdrant ({_short(str(exc))})") from exc
    except RuntimeError as exc:
        if "already accessed by another instance" in str(exc):
            raise SinkError(
                f"{action}: the embedded Qdrant folder is in use by another process "
                "(only one process can open it; wait for it or use a Qdrant server)"
            ) from exc
        raise
    except Exception as exc:
        if _is_transient(exc):
            raise SinkUnavailable(f"{action}: {type(exc).__name__}: {_short(str(exc))}") from exc
        raise


def _is_transient(exc: BaseException) -> bool:
    import httpx

    if isinstance(exc, httpx.TransportError | TimeoutError | ConnectionError):
        return True
    code = getattr(exc, "code", None)  # grpc.RpcError, without importing grpc
    if callable(code):
        name = getattr(code(), "name", "")
        return name in {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"}
    return False


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

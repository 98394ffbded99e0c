"""A Qdrant server's write endpoints over HTTP, for the Ray actors of a test to write to.

The driver of a test sync talks to a :class:`~tests.connector.store.servers.ServerLike` in its
own process; the actors, in other processes, reach the same in-memory store over HTTP through
this stand-in, which takes the REST requests qdrant-client sends for upserts, vector updates and
batched payload updates, records them, and applies them to that store.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from qdrant_client import QdrantClient
from qdrant_client import models as qm

_ROUTES = {
    ("PUT", "points"): "upsert",
    ("PUT", "points/vectors"): "update_vectors",
    ("POST", "points/batch"): "batch_update_points",
}


class RestWrites:
    """The requests received: (method of the client, collection, query parameters)."""

    def __init__(self, store: QdrantClient) -> None:
        self.store = store
        self.received: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()

    def apply(self, verb: str, path: str, query: dict[str, str], body: dict[str, Any]) -> Any:
        match = re.fullmatch(r"/collections/([^/]+)/(points(?:/vectors|/batch)?)", path)
        if match is None or (verb, match[2]) not in _ROUTES:
            raise LookupError(f"{verb} {path} is not a write this stand-in takes")
        name, method = match[1], _ROUTES[verb, match[2]]
        with self.lock:
            self.received.append((method, name, query))
            if method == "upsert":
                points = qm.PointsList.model_validate(body).points
                return self.store.upsert(name, points).model_dump(mode="json")
            if method == "update_vectors":
                vectors = qm.UpdateVectors.model_validate(body).points
                return self.store.update_vectors(name, vectors).model_dump(mode="json")
            operations = qm.UpdateOperations.model_validate(body).operations
            done = self.store.batch_update_points(name, operations)
            return [r.model_dump(mode="json") for r in done]


@contextmanager
def serving(writes: RestWrites) -> Iterator[str]:
    """Serves ``writes`` on a free local port while the block runs; yields the URL."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, verb: str) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            body = json.loads(
                self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}"
            )
            try:
                result: Any = writes.apply(verb, url.path, query, body)
                status, answer = 200, {"result": result, "status": "ok", "time": 0.0}
            except LookupError as exc:
                status, answer = 404, {"status": {"error": str(exc)}, "time": 0.0}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            self._answer("PUT")

        def do_POST(self) -> None:
            self._answer("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test reads what was received, not a log

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

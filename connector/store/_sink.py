"""The Qdrant side: collection layout, change state, background writes and deletes.

The same code serves the embedded mode (a local folder) and a Qdrant server (URL, API key,
optional gRPC): only the client's construction differs.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from connector.errors import (
    CollectionMismatch,
    ConnectorError,
    SinkError,
    SinkUnavailable,
    TransientError,
)
from connector.redact import register_secret
from connector.telemetry import Telemetry

if TYPE_CHECKING:
    from connector.settings import Settings
    from connector.store.edge import EdgeClient

__all__ = [
    "CollectionLayout",
    "PointState",
    "QdrantSink",
    "WriteBatch",
    "WriteCounts",
    "make_client",
    "translate_errors",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Payload keys the connector owns; change detection reads only these.
STATE_KEYS = ["text_hash", "content_hash", "encoded_with"]
# Payload keys of chunk points that carry a keyword index.
CHUNK_INDEXES = ("source", "content_hash", "chunk_id")


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


@dataclass(frozen=True, slots=True)
class CollectionLayout:
    """The vectors a collection must have for the configured models."""

    dense: dict[str, int]
    """Dense vector name → size."""
    sparse: dict[str, bool] = field(default_factory=dict)
    """Sparse vector name → whether it needs the IDF modifier."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Recorded in the collection's metadata (models, signatures), merged on each run."""


@dataclass(frozen=True, slots=True)
class PointState:
    """What a stored point says about how it was made."""

    text_hash: str | None
    content_hash: str | None
    encoded_with: dict[str, str]


@dataclass(slots=True)
class WriteBatch:
    """Writes for one window of chunks."""

    upserts: list[qm.PointStruct] = field(default_factory=list)
    vector_updates: list[qm.PointVectors] = field(default_factory=list)
    payload_overwrites: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(point id, whole new payload)."""

    def __bool__(self) -> bool:
        return bool(self.upserts or self.vector_updates or self.payload_overwrites)


@dataclass(slots=True)
class WriteCounts:
    """Acknowledged by Qdrant, not merely sent."""

    upserted: int = 0
    vectors_updated: int = 0
    payloads_updated: int = 0
    deleted: int = 0
    requests: int = 0
    retries: int = 0
    write_ms: float = 0.0
    """Time spent in acknowledged write requests (upserts, vector and payload updates)."""


_STOP = object()


class QdrantSink:
    """Writes one collection; upserts run in a background thread while the caller encodes.

    Args:
        client: A qdrant-client (embedded or server), or the edge engine's stand-in for one.
        collection: Collection name.
        batch_size: Points per write request.
        queue_size: Write requests that may wait; bounds memory when Qdrant is slower than encoding.
        retries: Retries of a transiently failed request.
        sleep: Used between retries (a test passes a no-op).
        telemetry: Where ``upsert`` spans, retries and write latencies go.
    """

    def __init__(
        self,
        client: QdrantClient | EdgeClient,
        collection: str,
        *,
        batch_size: int = 128,
        queue_size: int = 4,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.client = client
        self.collection = collection
        self.batch_size = batch_size
        self.retries = retries
        self.counts = WriteCounts()
        self._sleep = sleep
        self.telemetry = telemetry or Telemetry()
        # qdrant-client's embedded mode is not thread-safe: every call goes through this lock.
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._failure: BaseException | None = None
        self._writer: threading.Thread | None = None

    # -- requests ------------------------------------------------------------------------------

    def request(self, action: str, fn: Callable[[], T]) -> T:
        """Run one client call under the lock, translating errors and retrying transient ones."""
        attempt = 0
        while True:
            try:
                with self._lock, translate_errors(action):
                    return fn()
            except TransientError as exc:
                if attempt >= self.retries:
                    raise
                attempt += 1
                self.counts.retries += 1
                self.telemetry.count_retry(action.split(" ", 1)[0])
                delay = min(8.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                log.warning("%s failed (%s); retry %d of %d", action, exc, attempt, self.retries)
                self._sleep(delay)

    # -- collection ----------------------------------------------------------------------------

    def physical_name(self) -> str:
        """The collection behind the configured name (itself, unless the name is an alias).

        Schema changes go to the collection itself: a server applies point operations through
        an alias, but not every collection-level call.
        """
        response = self.request("list aliases", lambda: self.client.get_aliases())
        for alias in response.aliases:
            if alias.alias_name == self.collection:
                return alias.collection_name
        return self.collection

    def ensure_collection(self, layout: CollectionLayout) -> None:
        """Create the collection, or check and extend an existing one to fit ``layout``.

        Raises:
            CollectionMismatch: A vector exists with another size or kind.
        """
        name = self.physical_name()
        exists = self.request(
            f"look up collection {name!r}", lambda: self.client.collection_exists(name)
        )
        if not exists:
            self._create(name, layout)
            return
        info = self.request(f"read collection {name!r}", lambda: self.client.get_collection(name))
        dense = info.config.params.vectors or {}
        if not isinstance(dense, dict):
            raise CollectionMismatch(
                f"collection {name!r} has one unnamed vector; the connector needs named vectors "
                "(use another collection)"
            )
        sparse = info.config.params.sparse_vectors or {}
        for vector, size in layout.dense.items():
            if vector in sparse:
                raise CollectionMismatch(f"collection {name!r}: {vector!r} is a sparse vector")
            if vector not in dense:
                self._add_vector(
                    name,
                    vector,
                    qm.DenseVectorNameConfig(
                        dense=qm.DenseVectorConfig(size=size, distance=qm.Distance.COSINE)
                    ),
                )
            elif dense[vector].size != size:
                raise CollectionMismatch(
                    f"collection {name!r}: vector {vector!r} has size {dense[vector].size}, the "
                    f"model gives {size}; run `connector migrate` to rebuild the collection for "
                    "the new model, or use another collection or vector name"
                )
        for vector, idf in layout.sparse.items():
            if vector in dense:
                raise CollectionMismatch(f"collection {name!r}: {vector!r} is a dense vector")
            if vector not in sparse:
                self._add_vector(
                    name,
                    vector,
                    qm.SparseVectorNameConfig(
                        sparse=qm.SparseVectorConfig(modifier=qm.Modifier.IDF if idf else None)
                    ),
                )
            elif (sparse[vector].modifier == qm.Modifier.IDF) != idf:
                raise CollectionMismatch(
                    f"collection {name!r}: sparse vector {vector!r} "
                    f"{'lacks' if idf else 'has'} the IDF modifier this model "
                    f"{'needs' if idf else 'must not have'}"
                )
        if layout.metadata:
            self.request(
                f"record models on {name!r}",
                lambda: self.client.update_collection(name, metadata=layout.metadata),
            )

    def _create(self, name: str, layout: CollectionLayout) -> None:
        self.request(
            f"create collection {name!r}",
            lambda: self.client.create_collection(
                name,
                vectors_config={v: _dense_params(size) for v, size in layout.dense.items()},
                sparse_vectors_config={v: _sparse_params(idf) for v, idf in layout.sparse.items()},
                metadata=layout.metadata or None,
            ),
        )
        for key in CHUNK_INDEXES:
            self.create_index(name, key, qm.PayloadSchemaType.KEYWORD)
        log.info("created collection %s", name)

    def create_index(self, collection: str, key: str, schema: qm.PayloadSchemaType) -> None:
        """Index payload ``key`` of ``collection`` (a no-op when the index exists)."""
        with warnings.catch_warnings():
            # The embedded mode warns that it ignores payload indexes; a server uses them.
            warnings.simplefilter("ignore")
            self.request(
                f"index payload key {key!r} of {collection!r}",
                lambda: self.client.create_payload_index(collection, key, schema),
            )

    def _add_vector(self, collection: str, vector: str, config: Any) -> None:
        log.info("adding vector %s to collection %s", vector, collection)
        self.request(
            f"add vector {vector!r} to {collection!r}",
            lambda: self.client.create_vector_name(collection, vector, config),
        )

    def collection_metadata(self) -> dict[str, Any]:
        """The metadata recorded on the collection (empty when it does not exist)."""
        name = self.collection
        if not self.request("look up collection", lambda: self.client.collection_exists(name)):
            return {}
        info = self.request(f"read collection {name!r}", lambda: self.client.get_collection(name))
        return dict(info.config.metadata or {})

    # -- change state --------------------------------------------------------------------------

    def fetch_state(self, ids: Sequence[str]) -> dict[str, PointState]:
        """How each of ``ids`` that exists was made."""
        records = self.request(
            "read stored points",
            lambda: self.client.retrieve(self.collection, list(ids), with_payload=STATE_KEYS),
        )
        states = {}
        for record in records:
            payload = record.payload or {}
            states[str(record.id)] = PointState(
                text_hash=payload.get("text_hash"),
                content_hash=payload.get("content_hash"),
                encoded_with=dict(payload.get("encoded_with") or {}),
            )
        return states

    # -- writes --------------------------------------------------------------------------------

    def submit(self, batch: WriteBatch) -> None:
        """Queue ``batch`` for writing; blocks while the queue is full.

        Raises:
            ConnectorError: An earlier write failed (the writer stops at the first failure).
        """
        self._raise_failure()
        if not batch:
            return
        if self._writer is None:
            self._writer = threading.Thread(target=self._drain, name="qdrant-writer", daemon=True)
            self._writer.start()
        # The writer thread parents its `upsert` spans on the caller's span.
        parent = self.telemetry.context()
        for request in self._split(batch):
            while True:
                try:
                    self._queue.put((request, parent), timeout=0.5)
                    break
                except queue.Full:
                    self._raise_failure()

    def flush(self) -> None:
        """Wait until every queued write is acknowledged, then raise the first failure, if any."""
        if self._writer is not None:
            self._queue.put(_STOP)
            self._writer.join()
            self._writer = None
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def _split(self, batch: WriteBatch) -> Iterator[WriteBatch]:
        size = self.batch_size
        for start in range(0, len(batch.upserts), size):
            yield WriteBatch(upserts=batch.upserts[start : start + size])
        for start in range(0, len(batch.vector_updates), size):
            yield WriteBatch(vector_updates=batch.vector_updates[start : start + size])
        for start in range(0, len(batch.payload_overwrites), size):
            yield WriteBatch(payload_overwrites=batch.payload_overwrites[start : start + size])

    def _drain(self) -> None:
        while True:
            request = self._queue.get()
            if request is _STOP:
                return
            if self._failure is not None:
                continue  # drop the rest: the run is failing and will say why
            batch, parent = request
            try:
                self._write(batch, parent)
            except BaseException as exc:  # handed to the caller's thread
                self._failure = exc

    def _write(self, batch: WriteBatch, parent: object | None = None) -> None:
        attributes = {
            "points": len(batch.upserts),
            "vector_updates": len(batch.vector_updates),
            "payload_updates": len(batch.payload_overwrites),
        }
        started = time.perf_counter()
        with self.telemetry.span("upsert", attributes, parent=parent) as span:
            self._send(batch)
            latency = (time.perf_counter() - started) * 1000
            span.set_attribute("latency_ms", round(latency, 3))
        self.counts.write_ms += latency
        self.telemetry.record_stage("upsert", latency)

    def _send(self, batch: WriteBatch) -> None:
        name = self.collection
        if batch.upserts:
            self.request(
                f"upsert {len(batch.upserts)} points into {name!r}",
                lambda: self.client.upsert(name, batch.upserts, wait=True),
            )
            self.counts.upserted += len(batch.upserts)
        if batch.vector_updates:
            self.request(
                f"update vectors of {len(batch.vector_updates)} points in {name!r}",
                lambda: self.client.update_vectors(name, batch.vector_updates, wait=True),
            )
            self.counts.vectors_updated += len(batch.vector_updates)
        if batch.payload_overwrites:
            operations: list[Any] = [
                qm.OverwritePayloadOperation(
                    overwrite_payload=qm.SetPayload(payload=payload, points=[pid])
                )
                for pid, payload in batch.payload_overwrites
            ]
            self.request(
                f"update payload of {len(operations)} points in {name!r}",
                lambda: self.client.batch_update_points(name, operations, wait=True),
            )
            self.counts.payloads_updated += len(operations)
        self.counts.requests += 1

    # -- deletes -------------------------------------------------------------------------------

    def stored_ids(self, source: str, page: int = 1000) -> Iterator[str]:
        """Ids of every stored point of ``source``."""
        flt = qm.Filter(must=[qm.FieldCondition(key="source", match=qm.MatchValue(value=source))])
        offset: Any = None
        while True:
            points, offset = self.request(
                "list stored points",
                lambda offset=offset: self.client.scroll(
                    self.collection, flt, limit=page, offset=offset, with_payload=False
                ),
            )
            for point in points:
                yield str(point.id)
            if offset is None:
                return

    def delete(self, ids: Sequence[str]) -> None:
        """Delete ``ids`` (already flushed writes stay)."""
        for start in range(0, len(ids), self.batch_size):
            part = list(ids[start : start + self.batch_size])
            self.request(
                f"delete {len(part)} points from {self.collection!r}",
                lambda part=part: self.client.delete(
                    self.collection, qm.PointIdsList(points=part), wait=True
                ),
            )
            self.counts.deleted += len(part)

    def close(self) -> None:
        """Stop the writer (dropping nothing already queued) and close the client."""
        try:
            if self._writer is not None:
                self._queue.put(_STOP)
                self._writer.join()
                self._writer = None
        finally:
            self.client.close()


def _dense_params(size: int) -> qm.VectorParams:
    return qm.VectorParams(size=size, distance=qm.Distance.COSINE)


def _sparse_params(idf: bool) -> qm.SparseVectorParams:
    return qm.SparseVectorParams(modifier=qm.Modifier.IDF if idf else None)


def as_uuid_int(point: str) -> int:
    """A compact form of a point id, for sets that hold a whole source's ids."""
    return uuid.UUID(point).int

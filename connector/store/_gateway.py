"""The one way to Qdrant: every request of the connector is a method of :class:`Store`.

Each method runs one client call under the store's lock (the embedded client is not thread-safe,
and a run's record is written while the writer thread upserts), turns the client's errors into the
connector's own, and retries transient failures with backoff.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from qdrant_client import models as qm

from connector.errors import TransientError
from connector.store._client import translate_errors
from connector.store._points import PointWrite, client_vectors
from connector.store._remote import RemoteCollection
from connector.store.edge import EdgeClient
from connector.telemetry import Telemetry

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from connector.settings import ClusterSettings, IndexSettings

__all__ = ["Store", "WriteCounts"]

log = logging.getLogger(__name__)
T = TypeVar("T")


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


class Store:
    """A Qdrant (embedded or server) and every request the connector makes to it.

    Args:
        client: A qdrant-client (embedded or server), or the edge engine's stand-in for one.
        retries: Retries of a transiently failed request.
        sleep: Used between retries (a test passes a no-op).
        telemetry: Where retries are counted (and the writer's ``upsert`` spans go).
        index: Storage and index parameters of the collections with vectors; ``None``: the
            engine's own (qdrant-client's local engine has no index).
        cluster: Shards, replicas and write ordering on a server's cluster; ``None``: the
            server's defaults (an embedded engine has no cluster).
    """

    def __init__(
        self,
        client: QdrantClient | EdgeClient,
        *,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        telemetry: Telemetry | None = None,
        index: IndexSettings | None = None,
        cluster: ClusterSettings | None = None,
    ) -> None:
        self._client = client
        self.index = index
        self.cluster = cluster
        ordering = None if cluster is None else cluster.write_ordering
        self._ordering = None if ordering is None else qm.WriteOrdering(ordering)
        """The ordering every write request takes; ``None``: the server's default."""
        self._remotes: dict[str, RemoteCollection] = {}
        """Collections lent to a writer process (:meth:`in_writer_process`), by the name used."""
        self.retries = retries
        self.telemetry = telemetry or Telemetry()
        self.counts = WriteCounts()
        """Where retried requests are counted; a run's writer points it at the run's counts
        (:meth:`connector.store.Writer.begin`), so that its reads' retries count too."""
        self._sleep = sleep
        self._lock = threading.Lock()

    def _request(self, action: str, fn: Callable[[], T]) -> T:
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

    # -- the store -----------------------------------------------------------------------------

    def ping(self, action: str = "reach Qdrant") -> None:
        """Ask for the list of collections once, without retries: does Qdrant answer?

        Raises:
            ConnectorError: It does not, or refuses (``action`` starts the message).
        """
        with self._lock, translate_errors(action):
            self._client.get_collections()

    def close(self) -> None:
        """Close the client (an embedded store's folder is released)."""
        with self._lock:
            self._client.close()

    # -- collections ---------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        """Whether collection (or alias) ``name`` exists."""
        return self._request(
            f"look up collection {name!r}", lambda: self._client.collection_exists(name)
        )

    def info(self, name: str) -> qm.CollectionInfo:
        """Vectors, metadata and payload indexes of collection (or alias) ``name``."""
        return self._request(f"read collection {name!r}", lambda: self._client.get_collection(name))

    def metadata(self, name: str) -> dict[str, Any]:
        """The metadata recorded on collection (or alias) ``name``; empty when it does not exist."""
        if not self.exists(name):
            return {}
        return dict(self.info(name).config.metadata or {})

    def update_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        """Merge ``metadata`` into the collection's (top-level keys are replaced)."""
        self._request(
            f"record metadata on {name!r}",
            lambda: self._client.update_collection(name, metadata=dict(metadata)),
        )

    def aliases(self) -> dict[str, str]:
        """Every alias → the collection behind it."""
        response = self._request("list aliases", lambda: self._client.get_aliases())
        return {alias.alias_name: alias.collection_name for alias in response.aliases}

    def collections(self) -> list[str]:
        """Names of every collection (aliases not included)."""
        response = self._request("list collections", lambda: self._client.get_collections())
        return sorted(c.name for c in response.collections)

    def drop_alias(self, alias: str) -> None:
        """Delete ``alias`` (the collection behind it stays)."""
        drop = qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias))
        self._request(
            f"drop alias {alias!r}",
            lambda: self._client.update_collection_aliases(change_aliases_operations=[drop]),
        )

    def physical_name(self, name: str) -> str:
        """The collection behind ``name`` (itself, unless ``name`` is an alias).

        Schema changes go to the collection itself: a server applies point operations through
        an alias, but not every collection-level call.
        """
        return self.aliases().get(name, name)

    def set_alias(self, alias: str, collection: str, *, replace: bool = False) -> None:
        """Point ``alias`` at ``collection``.

        Args:
            alias: The alias.
            collection: The collection it answers for from now on.
            replace: The alias exists and moves: it is dropped and created in one request, which
                Qdrant applies together, so that readers of the alias never miss it.
        """
        create = qm.CreateAliasOperation(
            create_alias=qm.CreateAlias(collection_name=collection, alias_name=alias)
        )
        operations: list[qm.AliasOperations] = [create]
        action = f"create alias {alias!r} for {collection!r}"
        if replace:
            drop = qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias))
            operations = [drop, create]
            action = f"move alias {alias!r} to {collection!r}"
        self._request(
            action,
            lambda: self._client.update_collection_aliases(change_aliases_operations=operations),
        )

    def create_collection(
        self,
        name: str,
        dense: Mapping[str, qm.VectorParams],
        sparse: Mapping[str, qm.SparseVectorParams] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Create collection ``name`` with named ``dense`` and ``sparse`` vectors (none: a
        payload-only collection), stored and indexed as :attr:`index` says, spread over the
        cluster as :attr:`cluster` says."""
        vectors = dict(dense)
        tuning = self._placement(chunks=bool(dense or sparse))
        index = self.index
        if index is not None and (dense or sparse):
            vectors = {
                vector: params.model_copy(update={"on_disk": index.on_disk_vectors})
                for vector, params in dense.items()
            }
            tuning.update(
                on_disk_payload=index.on_disk_payload,
                hnsw_config=_hnsw(index.m, index.ef_construct),
                quantization_config=_quantization(index),
            )
            if index.max_segment_mb is not None:
                tuning["optimizers_config"] = _segments(index.max_segment_mb)
        self._request(
            f"create collection {name!r}",
            lambda: self._client.create_collection(
                name,
                vectors_config=vectors,
                sparse_vectors_config=dict(sparse) if sparse is not None else None,
                metadata=dict(metadata) if metadata else None,
                **tuning,
            ),
        )

    def _placement(self, *, chunks: bool) -> dict[str, Any]:
        """:attr:`cluster`'s creation parameters that are set, for a collection with vectors
        (``chunks``) or a payload-only one (the runs collection).

        The runs collection gets the replicas and the write acknowledgement: its records (a
        run's manifest, the sync lease) must outlive a node as the chunks they describe do.
        It keeps the server's shard number: ``shard_number`` is sized for the chunks, and a
        record per run gains nothing from more shards (each listing would ask all of them).
        """
        cluster = self.cluster
        if cluster is None:
            return {}
        wanted = {
            "replication_factor": cluster.replication_factor,
            "write_consistency_factor": cluster.write_consistency_factor,
        }
        if chunks:
            wanted["shard_number"] = cluster.shard_number
        return {key: value for key, value in wanted.items() if value is not None}

    def fit_index(self, name: str) -> None:
        """Apply :attr:`index` to existing collection ``name`` where it differs: HNSW
        parameters, quantization on or off, vectors and payload on disk or in RAM, the largest
        segment (where set). Segments built
        from then on follow them (the edge engine: at the next index build). The edge engine
        cannot turn quantization off in place: a warning says so, and it stays on."""
        index = self.index
        if index is None:
            return
        name = self.physical_name(name)
        config = self.info(name).config
        changes: dict[str, Any] = {}
        if (config.hnsw_config.m, config.hnsw_config.ef_construct) != (index.m, index.ef_construct):
            changes["hnsw_config"] = _hnsw(index.m, index.ef_construct)
        quantized = config.quantization_config is not None
        if quantized != (index.quantization == "int8"):
            if quantized and isinstance(self._client, EdgeClient):
                log.warning(
                    "collection %s keeps its int8 quantization: the edge engine cannot turn it "
                    "off on an existing collection (rebuild it with `connector migrate`)",
                    name,
                )
            else:
                changes["quantization_config"] = _quantization(index) or qm.Disabled.DISABLED
        vectors = config.params.vectors
        if isinstance(vectors, Mapping):
            moved = {
                vector: qm.VectorParamsDiff(on_disk=index.on_disk_vectors)
                for vector, params in vectors.items()
                if bool(params.on_disk) != index.on_disk_vectors
            }
            if moved:
                changes["vectors_config"] = moved
        if bool(config.params.on_disk_payload) != index.on_disk_payload:
            changes["collection_params"] = qm.CollectionParamsDiff(
                on_disk_payload=index.on_disk_payload
            )
        segments = None if index.max_segment_mb is None else _segments(index.max_segment_mb)
        if segments is not None and (
            config.optimizer_config.max_segment_size != segments.max_segment_size
        ):
            changes["optimizers_config"] = segments
        if changes:
            log.info("collection %s: applying qdrant.index (%s)", name, ", ".join(sorted(changes)))
            self._request(
                f"update the parameters of {name!r}",
                lambda: self._client.update_collection(name, **changes),
            )

    def defer_index(self, name: str) -> bool:
        """Turn the HNSW graph of collection ``name`` off (``m = 0``) while a first bulk load fills
        it, when it is empty and :attr:`index` asks for it; whether it did. :meth:`build_index`
        turns it back on.

        Not on the edge engine: it grows no graph while loading (it builds each segment's graph
        once, when the segment is full), so there is nothing to defer, and turning the graph
        off would only make it write every segment twice."""
        index = self.index
        if index is None or not index.deferred_build or index.m == 0:
            return False
        if isinstance(self._client, EdgeClient) or self.count(name):
            return False
        name = self.physical_name(name)
        self._request(
            f"defer the index of {name!r}",
            lambda: self._client.update_collection(name, hnsw_config=_hnsw(0, None)),
        )
        return True

    def build_index(self, name: str, *, build: bool = True) -> None:
        """Give collection ``name`` its configured HNSW parameters back (after
        :meth:`defer_index`) and, with ``build``, have the edge engine build its index now (a
        server builds it in the background; the engine in-process never does on its own)."""
        index = self.index
        name = self.physical_name(name)
        if index is not None and self.info(name).config.hnsw_config.m != index.m:
            self._request(
                f"restore the index of {name!r}",
                lambda: self._client.update_collection(
                    name, hnsw_config=_hnsw(index.m, index.ef_construct)
                ),
            )
        client = self._client
        if build and isinstance(client, EdgeClient):
            log.info("building the index of %s", name)
            # Outside the store's lock: a build takes minutes at a million points, and the shard
            # is safe to build while other collections are written (a run's record, say).
            with translate_errors(f"build the index of {name!r}"):
                client.optimize(name)

    def drop_collection(self, name: str) -> None:
        """Delete collection ``name`` with its points."""
        self._request(f"drop collection {name!r}", lambda: self._client.delete_collection(name))

    def add_vector(
        self,
        name: str,
        vector: str,
        config: qm.DenseVectorNameConfig | qm.SparseVectorNameConfig,
    ) -> None:
        """Add named vector ``vector`` to collection ``name`` (stored points keep theirs)."""
        self._request(
            f"add vector {vector!r} to {name!r}",
            lambda: self._client.create_vector_name(name, vector, config),
        )

    def create_index(self, name: str, key: str, schema: qm.PayloadSchemaType) -> None:
        """Index payload ``key`` of collection ``name`` (a no-op when the index exists)."""
        with warnings.catch_warnings():
            # The embedded mode warns that it ignores payload indexes; a server uses them.
            warnings.simplefilter("ignore")
            self._request(
                f"index payload key {key!r} of {name!r}",
                lambda: self._client.create_payload_index(name, key, schema),
            )

    # -- points --------------------------------------------------------------------------------

    def count(self, name: str) -> int:
        """Exact count of the points of ``name``."""
        result = self._request(f"count {name!r}", lambda: self._client.count(name, exact=True))
        return int(result.count)

    def scroll(
        self,
        name: str,
        *,
        filter: qm.Filter | None = None,
        limit: int = 256,
        offset: qm.ExtendedPointId | None = None,
        with_payload: bool | list[str] = True,
        with_vectors: bool = False,
        order_by: qm.OrderBy | None = None,
    ) -> tuple[list[qm.Record], qm.ExtendedPointId | None]:
        """One page of points of ``name``, and the offset of the next (``None``: the last)."""
        return self._request(
            f"list points of {name!r}",
            lambda: self._client.scroll(
                name,
                scroll_filter=filter,
                limit=limit,
                offset=offset,
                with_payload=with_payload,
                with_vectors=with_vectors,
                order_by=order_by,
            ),
        )

    def pages(
        self,
        name: str,
        *,
        filter: qm.Filter | None = None,
        page: int = 256,
        with_payload: bool | list[str] = True,
        with_vectors: bool = False,
    ) -> Iterator[list[qm.Record]]:
        """Every point of ``name`` (matching ``filter``), a page per request; the lock is free
        between pages."""
        offset: qm.ExtendedPointId | None = None
        while True:
            records, offset = self.scroll(
                name,
                filter=filter,
                limit=page,
                offset=offset,
                with_payload=with_payload,
                with_vectors=with_vectors,
            )
            if records:
                yield records
            if offset is None:
                return

    def retrieve(
        self, name: str, ids: Sequence[qm.ExtendedPointId], *, with_payload: bool | list[str]
    ) -> list[qm.Record]:
        """The points of ``ids`` that exist in ``name``."""
        remote = self._remotes.get(name)
        if remote is not None:
            return self._request(  # type: ignore[no-any-return]
                f"read {len(ids)} points of {name!r}",
                lambda: remote.call("retrieve", name, list(ids), with_payload, read=True),
            )
        return self._request(
            f"read {len(ids)} points of {name!r}",
            lambda: self._client.retrieve(name, list(ids), with_payload=with_payload),
        )

    def upsert(self, name: str, points: Sequence[qm.PointStruct]) -> None:
        """Write ``points`` whole; returns once Qdrant acknowledged them."""
        self._request(
            f"upsert {len(points)} points into {name!r}",
            lambda: self._client.upsert(name, list(points), wait=True, ordering=self._ordering),
        )

    @contextmanager
    def in_writer_process(self, name: str) -> Iterator[bool]:
        """While the block runs, reads of point state and writes to collection ``name`` go to a
        writer process that holds it alone (the embedded engine only: yields ``False``, and
        changes nothing, on another client). The collection comes back when the block ends.

        Nothing else may touch ``name`` meanwhile (it raises ``SinkError``).
        """
        client = self._client
        if not isinstance(client, EdgeClient) or name in self._remotes:
            yield False
            return
        remote = self._request(
            f"open {name!r} in a writer process", lambda: RemoteCollection(client, name)
        )
        self._remotes[name] = remote
        try:
            yield True
        finally:
            del self._remotes[name]
            remote.close()

    def write_points(self, name: str, points: Sequence[PointWrite]) -> None:
        """Write ``points`` whole, as :meth:`upsert` does, without building a client model per
        point where the client takes them plain (the embedded engine)."""
        if self._write_plain(
            name, f"upsert {len(points)} points into {name!r}", "write_points", points
        ):
            return
        self.upsert(
            name,
            [
                qm.PointStruct(id=p.id, vector=client_vectors(p.vectors), payload=p.payload)
                for p in points
            ],
        )

    def write_vectors(self, name: str, updates: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Replace the named vectors of each (point id, vectors), as :meth:`update_vectors` does,
        plain where the client takes them plain."""
        action = f"update vectors of {len(updates)} points in {name!r}"
        if self._write_plain(name, action, "write_vectors", updates):
            return
        self.update_vectors(
            name,
            [qm.PointVectors(id=pid, vector=client_vectors(vectors)) for pid, vectors in updates],
        )

    def _write_plain(self, name: str, action: str, method: str, items: Sequence[Any]) -> bool:
        """``EdgeClient.<method>(name, items)`` in the writer process that holds ``name``, or
        here; ``False`` (nothing sent) when the client takes no plain data."""
        remote = self._remotes.get(name)
        if remote is not None:
            self._request(action, lambda: remote.call(method, name, list(items)))
            return True
        client = self._client
        if isinstance(client, EdgeClient):
            self._request(action, lambda: getattr(client, method)(name, items))
            return True
        return False

    def update_vectors(self, name: str, vectors: Sequence[qm.PointVectors]) -> None:
        """Replace the given named vectors of existing points (their other vectors stay)."""
        self._request(
            f"update vectors of {len(vectors)} points in {name!r}",
            lambda: self._client.update_vectors(
                name, list(vectors), wait=True, ordering=self._ordering
            ),
        )

    def overwrite_payloads(
        self, name: str, payloads: Sequence[tuple[qm.ExtendedPointId, dict[str, Any]]]
    ) -> None:
        """Replace the whole payload of each (point id, payload), in one request."""
        operations: list[qm.UpdateOperation] = [
            qm.OverwritePayloadOperation(
                overwrite_payload=qm.SetPayload(payload=payload, points=[pid])
            )
            for pid, payload in payloads
        ]
        remote = self._remotes.get(name)
        if remote is not None:
            self._request(
                f"update payload of {len(operations)} points in {name!r}",
                lambda: remote.call("batch_update_points", name, operations),
            )
            return
        self._request(
            f"update payload of {len(operations)} points in {name!r}",
            lambda: self._client.batch_update_points(
                name, operations, wait=True, ordering=self._ordering
            ),
        )

    def delete(self, name: str, ids: Sequence[qm.ExtendedPointId]) -> None:
        """Delete the points of ``ids`` from ``name``."""
        self._request(
            f"delete {len(ids)} points from {name!r}",
            lambda: self._client.delete(
                name, qm.PointIdsList(points=list(ids)), wait=True, ordering=self._ordering
            ),
        )

    def query(
        self,
        name: str,
        query: Any,
        *,
        using: str | None = None,
        prefetch: Sequence[qm.Prefetch] | None = None,
        limit: int = 10,
        with_vectors: bool | list[str] = False,
    ) -> list[qm.ScoredPoint]:
        """The best ``limit`` points of ``name`` for ``query`` (a vector on ``using``, or a fusion
        of ``prefetch`` branches), with their payloads."""
        params = self._search_params()
        branches = None
        if prefetch is not None:
            branches = [
                p.model_copy(update={"params": params}) if p.params is None else p for p in prefetch
            ]
        response = self._request(
            f"query {name!r}",
            lambda: self._client.query_points(
                name,
                query=query,
                using=using,
                prefetch=branches,
                limit=limit,
                with_payload=True,
                with_vectors=with_vectors,
                search_params=params,
            ),
        )
        return list(response.points)

    def _search_params(self) -> qm.SearchParams | None:
        """:attr:`index`'s search-time parameters: the HNSW candidates, and rescoring of
        quantized candidates with the original vectors (what keeps int8 search's ranking)."""
        index = self.index
        if index is None:
            return None
        quantized = index.quantization == "int8"
        if index.hnsw_ef is None and not quantized:
            return None
        rescore = qm.QuantizationSearchParams(rescore=True) if quantized else None
        return qm.SearchParams(hnsw_ef=index.hnsw_ef, quantization=rescore)


def _hnsw(m: int, ef_construct: int | None) -> qm.HnswConfigDiff:
    return qm.HnswConfigDiff(m=m, ef_construct=ef_construct)


def _segments(max_segment_mb: int) -> qm.OptimizersConfigDiff:
    return qm.OptimizersConfigDiff(max_segment_size=max_segment_mb * 1024)  # in KB


def _quantization(index: IndexSettings) -> qm.ScalarQuantization | None:
    if index.quantization == "none":
        return None
    # The int8 copy is what the graph search reads: it stays in RAM, the originals on disk.
    return qm.ScalarQuantization(
        scalar=qm.ScalarQuantizationConfig(type=qm.ScalarType.INT8, always_ram=True)
    )

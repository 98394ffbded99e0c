"""The embedded store on Qdrant's own engine (``qdrant-edge-py``), behind qdrant-client's calls.

qdrant-client's local mode keeps every point in Python objects and pickles each write to SQLite,
which caps a sparse-only sync at a few hundred points per second and holds the whole collection in
memory. :class:`EdgeClient` answers the calls the connector makes (``upsert``, ``retrieve``,
``scroll``, ``query_points`` with prefetch and fusion, collection metadata, ...) with the same
arguments and result types as ``QdrantClient``, and runs them on Qdrant's engine in-process: one
shard per collection under ``<path>/edge/<collection>/``. The store and the tests call
it exactly as they call a ``QdrantClient``.

What the engine has no notion of, this module keeps beside each shard in ``collection.json``: the
collection's metadata, its vector parameters and its index parameters (the shard does not report
them back). New index parameters apply by reopening the shard with them; the engine builds what
they ask for only when told (:meth:`EdgeClient.optimize`), never in the background. So the client
seals the segment being written each time it holds a full segment's vectors (:data:`SEGMENT_KB`),
building its graph then, once: left alone, the engine would keep a whole bulk load in one
segment in RAM, search it by scanning, and rewrite it at once when told to build (12 GB at a
million chunks). Aliases
live in ``aliases.json`` at the root, replaced in one step, so a swap is atomic as on a server.

Not supported (a :class:`~connector.errors.SinkError` says so): snapshots, unnamed vectors,
multivectors, and query types other than nearest-vector and fusion.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import portalocker
import qdrant_edge as edge
from qdrant_client import models as qm
from qdrant_client.http.models import QueryResponse

from connector._files import write_json_atomic
from connector.errors import ConnectorError, SinkError
from connector.store._points import PointWrite, SparseValues

__all__ = ["SEGMENT_KB", "EdgeClient"]

_DISTANCES = {
    qm.Distance.COSINE: edge.Distance.Cosine,
    qm.Distance.DOT: edge.Distance.Dot,
    qm.Distance.EUCLID: edge.Distance.Euclid,
    qm.Distance.MANHATTAN: edge.Distance.Manhattan,
}
_SCHEMAS = {
    qm.PayloadSchemaType.KEYWORD: edge.PayloadSchemaType.Keyword,
    qm.PayloadSchemaType.INTEGER: edge.PayloadSchemaType.Integer,
    qm.PayloadSchemaType.FLOAT: edge.PayloadSchemaType.Float,
    qm.PayloadSchemaType.BOOL: edge.PayloadSchemaType.Bool,
    qm.PayloadSchemaType.GEO: edge.PayloadSchemaType.Geo,
    qm.PayloadSchemaType.TEXT: edge.PayloadSchemaType.Text,
    qm.PayloadSchemaType.DATETIME: edge.PayloadSchemaType.Datetime,
    qm.PayloadSchemaType.UUID: edge.PayloadSchemaType.Uuid,
}
# The engine needs at least one vector per shard; a payload-only collection gets this sparse one,
# which no point carries and no caller sees.
_PLACEHOLDER = "__connector_payload_only"
_HNSW_DEFAULT = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10_000}
"""The engine's HNSW parameters where a collection names none (Qdrant's defaults)."""
_INT8 = qm.ScalarQuantization(
    scalar=qm.ScalarQuantizationConfig(type=qm.ScalarType.INT8, always_ram=True)
)
SEGMENT_KB = 128 * 1024
"""Largest segment the engine builds, in KB of vectors, where a collection names none: small
enough that building or sealing one stays well within memory, large enough that a million 384-d
points make a dozen segments to search."""
_SEAL_MIN_POINTS = 1_000
_INDEXING_KB = 10_000
"""Qdrant's own threshold under which a segment gets no index (scanning it is as fast)."""
_CONFIG_FILE = "collection.json"
_ALIAS_FILE = "aliases.json"
_SHARD_DIR = "shard"


class EdgeClient:
    """The subset of ``QdrantClient`` the connector uses, on an in-process Qdrant engine.

    Args:
        path: Folder of the embedded store; collections live in ``<path>/edge/``.
        lock: Take the folder's lock; ``False`` only in a process that works on a collection
            another process lent it (:meth:`lend`), under that process's lock.

    Raises:
        SinkError: Another process has the folder open.
    """

    def __init__(self, path: str | os.PathLike[str], *, lock: bool = True) -> None:
        self.root = Path(path) / "edge"
        self.root.mkdir(parents=True, exist_ok=True)
        self._guard = threading.RLock()
        self._lock_file: portalocker.Lock | None = None
        if lock:
            self._lock_file = portalocker.Lock(
                str(self.root / ".lock"), mode="a", timeout=0, fail_when_locked=True
            )
            try:
                self._lock_file.acquire()
            except portalocker.exceptions.LockException:
                raise SinkError(
                    f"open Qdrant: the embedded Qdrant folder {path} is in use by another "
                    "process (only one process can open it; wait for it or use a Qdrant server)"
                ) from None
        self._lent: set[str] = set()
        self._shards: dict[str, edge.EdgeShard] = {}
        self._configs: dict[str, dict[str, Any]] = {}
        self._alias_map: dict[str, str] | None = None
        self._unsealed: dict[str, int] = {}
        self._sealing = threading.Lock()
        self._closed = False

    # -- collections ---------------------------------------------------------------------------

    def collection_exists(self, collection_name: str) -> bool:
        collection_name = self._resolve(collection_name)
        return (self._folder(collection_name) / _CONFIG_FILE).is_file()

    def get_collections(self) -> qm.CollectionsResponse:
        names = sorted(p.parent.name for p in self.root.glob(f"*/{_CONFIG_FILE}"))
        return qm.CollectionsResponse(
            collections=[qm.CollectionDescription(name=name) for name in names]
        )

    def create_collection(
        self,
        collection_name: str,
        vectors_config: Mapping[str, qm.VectorParams] | qm.VectorParams | None = None,
        sparse_vectors_config: Mapping[str, qm.SparseVectorParams] | None = None,
        metadata: dict[str, Any] | None = None,
        on_disk_payload: bool | None = None,
        hnsw_config: qm.HnswConfigDiff | None = None,
        quantization_config: qm.QuantizationConfig | None = None,
        optimizers_config: qm.OptimizersConfigDiff | None = None,
        **kwargs: Any,
    ) -> bool:
        if self.collection_exists(collection_name) or collection_name in self._aliases():
            raise SinkError(f"collection {collection_name!r} already exists")
        if isinstance(vectors_config, qm.VectorParams):
            raise SinkError("the edge engine keeps named vectors only")
        dense = {
            name: {"size": params.size, "distance": _distance_name(params.distance)}
            | ({"on_disk": params.on_disk} if params.on_disk is not None else {})
            for name, params in (vectors_config or {}).items()
        }
        sparse = {
            name: {"idf": params.modifier == qm.Modifier.IDF}
            for name, params in (sparse_vectors_config or {}).items()
        }
        config = {"dense": dense, "sparse": sparse, "metadata": _jsonable(metadata or {})}
        config["index"] = _index_entry(
            {}, on_disk_payload, hnsw_config, quantization_config, collection_name
        ) | _segment_entry(optimizers_config)
        folder = self._folder(collection_name)
        with self._guard, _engine_errors(f"create collection {collection_name!r}"):
            if folder.exists():
                shutil.rmtree(folder)  # a creation that stopped half-way: nothing to keep
            folder.mkdir(parents=True)
            shard = edge.EdgeShard.create(str(folder / _SHARD_DIR), _edge_config(config))
            self._shards[collection_name] = shard
            self._save_config(collection_name, config)
        return True

    def delete_collection(self, collection_name: str, **kwargs: Any) -> bool:
        with self._guard:
            shard = self._shards.pop(collection_name, None)
            self._configs.pop(collection_name, None)
            if shard is not None:
                shard.close()
            folder = self._folder(collection_name)
            if not folder.exists():
                return False
            shutil.rmtree(folder)
            aliases = self._aliases()
            if collection_name in aliases.values():
                self._save_aliases({a: c for a, c in aliases.items() if c != collection_name})
            return True

    def get_collection(self, collection_name: str) -> qm.CollectionInfo:
        collection_name = self._resolve(collection_name)
        config = self._config(collection_name)
        index = config.get("index", {})
        shard = self._shard(collection_name)
        with _engine_errors(f"read collection {collection_name!r}"):
            info = shard.info()
        return qm.CollectionInfo(
            status=qm.CollectionStatus.GREEN,
            optimizer_status=qm.OptimizersStatusOneOf.OK,
            indexed_vectors_count=info.indexed_vectors_count,
            points_count=info.points_count,
            segments_count=info.segments_count,
            payload_schema={},
            config=qm.CollectionConfig(
                params=qm.CollectionParams(
                    vectors={
                        name: qm.VectorParams(
                            size=v["size"],
                            distance=qm.Distance(v["distance"]),
                            on_disk=v.get("on_disk"),
                        )
                        for name, v in config["dense"].items()
                    },
                    on_disk_payload=index.get("on_disk_payload"),
                    sparse_vectors={
                        name: qm.SparseVectorParams(modifier=qm.Modifier.IDF if v["idf"] else None)
                        for name, v in config["sparse"].items()
                    },
                ),
                hnsw_config=qm.HnswConfig(
                    m=index.get("m", _HNSW_DEFAULT["m"]),
                    ef_construct=index.get("ef_construct", _HNSW_DEFAULT["ef_construct"]),
                    full_scan_threshold=_HNSW_DEFAULT["full_scan_threshold"],
                ),
                quantization_config=_INT8 if index.get("quantization") == "int8" else None,
                optimizer_config=qm.OptimizersConfig(
                    deleted_threshold=0.2,
                    vacuum_min_vector_number=1000,
                    default_segment_number=0,
                    max_segment_size=_segment_kb(config),
                    flush_interval_sec=5,
                ),
                wal_config=qm.WalConfig(wal_capacity_mb=32, wal_segments_ahead=0),
                metadata=json.loads(json.dumps(config["metadata"])) or None,
            ),
        )

    def update_collection(
        self,
        collection_name: str,
        metadata: dict[str, Any] | None = None,
        vectors_config: Mapping[str, qm.VectorParamsDiff] | None = None,
        hnsw_config: qm.HnswConfigDiff | None = None,
        quantization_config: qm.QuantizationConfigDiff | None = None,
        collection_params: qm.CollectionParamsDiff | None = None,
        optimizers_config: qm.OptimizersConfigDiff | None = None,
        **kwargs: Any,
    ) -> bool:
        """Record ``metadata``; apply new storage and index parameters, which the engine takes
        when the collection is reopened with them (segments built from then on follow them)."""
        collection_name = self._resolve(collection_name)
        unsupported = sorted(k for k, v in kwargs.items() if v is not None)
        if unsupported:
            raise SinkError(f"the edge engine cannot update {', '.join(unsupported)}")
        tuned = (
            vectors_config,
            hnsw_config,
            quantization_config,
            collection_params,
            optimizers_config,
        )
        if metadata is None and all(v is None for v in tuned):
            return False
        with self._guard:
            config = self._config(collection_name)
            if metadata is not None:
                # Like a server: top-level keys are replaced, others kept.
                config["metadata"].update(_jsonable(metadata))
            if any(v is not None for v in tuned):
                config = json.loads(json.dumps(config))  # the stored one stays until it applies
                for name, diff in (vectors_config or {}).items():
                    if name not in config["dense"]:
                        raise SinkError(f"collection {collection_name!r} has no vector {name!r}")
                    if diff.on_disk is not None:
                        config["dense"][name]["on_disk"] = diff.on_disk
                on_disk_payload = collection_params.on_disk_payload if collection_params else None
                config["index"] = _index_entry(
                    config.get("index", {}),
                    on_disk_payload,
                    hnsw_config,
                    quantization_config,
                    collection_name,
                ) | _segment_entry(optimizers_config)
                self._reopen(collection_name, config)
            self._save_config(collection_name, config)
        return True

    def optimize(self, collection_name: str) -> bool:
        """Build what the collection's parameters ask for (HNSW graphs, quantized vectors, merged
        segments) now, blocking: the engine in-process builds nothing on its own. Whether it
        changed anything."""
        collection_name = self._resolve(collection_name)
        shard = self._shard(collection_name)
        with _engine_errors(f"build the index of {collection_name!r}"):
            built = bool(shard.optimize())
        _release_freed_memory()
        return built

    def create_vector_name(
        self,
        collection_name: str,
        vector_name: str,
        vector_name_config: qm.DenseVectorNameConfig | qm.SparseVectorNameConfig,
        **kwargs: Any,
    ) -> qm.UpdateResult:
        collection_name = self._resolve(collection_name)
        with self._guard:
            config = self._config(collection_name)
            if vector_name in config["dense"] or vector_name in config["sparse"]:
                raise SinkError(f"collection {collection_name!r} has vector {vector_name!r}")
            if isinstance(vector_name_config, qm.DenseVectorNameConfig):
                dense = vector_name_config.dense
                entry = {"size": dense.size, "distance": _distance_name(dense.distance)}
                operation = edge.UpdateOperation.create_dense_vector(
                    vector_name, dense.size, _DISTANCES[qm.Distance(entry["distance"])]
                )
                config["dense"][vector_name] = entry
            else:
                idf = vector_name_config.sparse.modifier == qm.Modifier.IDF
                operation = edge.UpdateOperation.create_sparse_vector(
                    vector_name, modifier=edge.Modifier.Idf if idf else None
                )
                config["sparse"][vector_name] = {"idf": idf}
            self._update(collection_name, operation, f"add vector {vector_name!r}")
            self._save_config(collection_name, config)
        return _completed()

    def create_payload_index(
        self,
        collection_name: str,
        field_name: str,
        field_schema: qm.PayloadSchemaType | None = None,
        **kwargs: Any,
    ) -> qm.UpdateResult:
        collection_name = self._resolve(collection_name)
        try:
            schema = _SCHEMAS.get(qm.PayloadSchemaType(field_schema or "keyword"))
        except ValueError:
            schema = None
        if schema is None:
            raise SinkError(f"the edge engine cannot index {field_name!r} as {field_schema}")
        operation = edge.UpdateOperation.create_field_index(field_name, schema)
        self._update(collection_name, operation, f"index payload key {field_name!r}")
        return _completed()

    # -- points --------------------------------------------------------------------------------

    def upsert(
        self, collection_name: str, points: Sequence[qm.PointStruct], **kwargs: Any
    ) -> qm.UpdateResult:
        collection_name = self._resolve(collection_name)
        if not isinstance(points, Sequence):
            raise SinkError("the edge engine takes points as a list of PointStruct")
        converted = [edge.Point(_point_id(p.id), _vectors(p.vector), p.payload) for p in points]
        operation = edge.UpdateOperation.upsert_points(converted)
        self._update(collection_name, operation, f"upsert {len(points)} points")
        self._written(collection_name, len(points))
        return _completed()

    def write_points(self, collection_name: str, points: Sequence[PointWrite]) -> None:
        """:meth:`upsert` of plain points (no client model built per point)."""
        collection_name = self._resolve(collection_name)
        converted = [edge.Point(_point_id(p.id), _vectors(p.vectors), p.payload) for p in points]
        operation = edge.UpdateOperation.upsert_points(converted)
        self._update(collection_name, operation, f"upsert {len(points)} points")
        self._written(collection_name, len(points))

    def write_vectors(
        self, collection_name: str, updates: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        """:meth:`update_vectors` of plain (point id, named vectors) pairs."""
        collection_name = self._resolve(collection_name)
        converted = [
            edge.PointVectors(_point_id(pid), _vectors(vectors)) for pid, vectors in updates
        ]
        operation = edge.UpdateOperation.update_vectors(converted)
        self._update(collection_name, operation, f"update vectors of {len(updates)} points")
        self._written(collection_name, len(updates))

    def update_vectors(
        self, collection_name: str, points: Sequence[qm.PointVectors], **kwargs: Any
    ) -> qm.UpdateResult:
        collection_name = self._resolve(collection_name)
        converted = [edge.PointVectors(_point_id(p.id), _vectors(p.vector)) for p in points]
        operation = edge.UpdateOperation.update_vectors(converted)
        self._update(collection_name, operation, f"update vectors of {len(points)} points")
        self._written(collection_name, len(points))
        return _completed()

    def overwrite_payload(
        self,
        collection_name: str,
        payload: dict[str, Any],
        points: Sequence[qm.ExtendedPointId] | qm.Filter,
        **kwargs: Any,
    ) -> qm.UpdateResult:
        return self._payload_update(collection_name, payload, points, overwrite=True)

    def set_payload(
        self,
        collection_name: str,
        payload: dict[str, Any],
        points: Sequence[qm.ExtendedPointId] | qm.Filter,
        **kwargs: Any,
    ) -> qm.UpdateResult:
        return self._payload_update(collection_name, payload, points, overwrite=False)

    def _payload_update(
        self,
        collection_name: str,
        payload: dict[str, Any],
        points: Sequence[qm.ExtendedPointId] | qm.Filter,
        *,
        overwrite: bool,
    ) -> qm.UpdateResult:
        collection_name = self._resolve(collection_name)
        ops = edge.UpdateOperation
        if isinstance(points, qm.Filter):
            by_filter = ops.overwrite_payload_by_filter if overwrite else ops.set_payload_by_filter
            operation = by_filter(_filter(points), payload)
        else:
            by_ids = ops.overwrite_payload if overwrite else ops.set_payload
            operation = by_ids([_point_id(p) for p in points], payload)
        self._update(collection_name, operation, f"{'overwrite' if overwrite else 'set'} payload")
        return _completed()

    def batch_update_points(
        self, collection_name: str, update_operations: Sequence[Any], **kwargs: Any
    ) -> list[qm.UpdateResult]:
        collection_name = self._resolve(collection_name)
        results = []
        for operation in update_operations:
            if isinstance(operation, qm.OverwritePayloadOperation):
                body = operation.overwrite_payload
                target = _payload_target(body)
                results.append(self.overwrite_payload(collection_name, body.payload, target))
            elif isinstance(operation, qm.SetPayloadOperation):
                body = operation.set_payload
                results.append(
                    self.set_payload(collection_name, body.payload, _payload_target(body))
                )
            elif isinstance(operation, qm.UpsertOperation) and isinstance(
                operation.upsert, qm.PointsList
            ):
                results.append(self.upsert(collection_name, operation.upsert.points))
            elif isinstance(operation, qm.DeleteOperation):
                results.append(self.delete(collection_name, operation.delete))
            else:
                raise SinkError(
                    f"the edge engine does not run {type(operation).__name__} in a batch"
                )
        return results

    def delete(
        self,
        collection_name: str,
        points_selector: qm.PointIdsList | qm.FilterSelector | Sequence[qm.ExtendedPointId],
        **kwargs: Any,
    ) -> qm.UpdateResult:
        collection_name = self._resolve(collection_name)
        if isinstance(points_selector, qm.FilterSelector):
            operation = edge.UpdateOperation.delete_points_by_filter(
                _filter(points_selector.filter)
            )
        else:
            ids = (
                points_selector.points
                if isinstance(points_selector, qm.PointIdsList)
                else points_selector
            )
            operation = edge.UpdateOperation.delete_points([_point_id(p) for p in ids])
        self._update(collection_name, operation, "delete points")
        return _completed()

    def retrieve(
        self,
        collection_name: str,
        ids: Sequence[qm.ExtendedPointId],
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
        **kwargs: Any,
    ) -> list[qm.Record]:
        collection_name = self._resolve(collection_name)
        shard = self._shard(collection_name)
        with _engine_errors(f"read points of {collection_name!r}"):
            records = shard.retrieve(
                [_point_id(p) for p in ids], _selector(with_payload), _selector(with_vectors)
            )
        return [_record(r) for r in records]

    def scroll(
        self,
        collection_name: str,
        scroll_filter: qm.Filter | None = None,
        limit: int = 10,
        offset: qm.ExtendedPointId | None = None,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
        order_by: qm.OrderBy | None = None,
        **kwargs: Any,
    ) -> tuple[list[qm.Record], qm.ExtendedPointId | None]:
        collection_name = self._resolve(collection_name)
        shard = self._shard(collection_name)
        request = edge.ScrollRequest(
            offset=_point_id(offset) if offset is not None else None,
            limit=limit,
            filter=_filter(scroll_filter) if scroll_filter is not None else None,
            with_payload=_selector(with_payload),
            with_vector=_selector(with_vectors),
            order_by=_order_by(order_by) if order_by is not None else None,
        )
        with _engine_errors(f"list points of {collection_name!r}"):
            records, next_offset = shard.scroll(request)
        following = _plain_id(next_offset) if next_offset is not None else None
        return [_record(r) for r in records], following

    def count(
        self, collection_name: str, count_filter: qm.Filter | None = None, **kwargs: Any
    ) -> qm.CountResult:
        collection_name = self._resolve(collection_name)
        shard = self._shard(collection_name)
        request = edge.CountRequest(
            filter=_filter(count_filter) if count_filter is not None else None, exact=True
        )
        with _engine_errors(f"count points of {collection_name!r}"):
            return qm.CountResult(count=shard.count(request))

    def query_points(
        self,
        collection_name: str,
        query: Any = None,
        using: str | None = None,
        prefetch: qm.Prefetch | Sequence[qm.Prefetch] | None = None,
        query_filter: qm.Filter | None = None,
        limit: int = 10,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
        score_threshold: float | None = None,
        search_params: qm.SearchParams | None = None,
        **kwargs: Any,
    ) -> QueryResponse:
        collection_name = self._resolve(collection_name)
        shard = self._shard(collection_name)
        request = edge.QueryRequest(
            limit=limit,
            query=_query(query, using) if query is not None else None,
            prefetches=_prefetches(prefetch),
            filter=_filter(query_filter) if query_filter is not None else None,
            score_threshold=score_threshold,
            params=_search_params(search_params),
            with_payload=_selector(with_payload),
            with_vector=_selector(with_vectors),
        )
        with _engine_errors(f"query {collection_name!r}"):
            points = shard.query(request)
        return QueryResponse(points=[_scored(p) for p in points])

    def close(self, **kwargs: Any) -> None:
        with self._guard:
            if self._closed:
                return
            self._closed = True
            try:
                for shard in self._shards.values():
                    shard.flush()
                    shard.close()
            finally:
                self._shards.clear()
                if self._lock_file is not None:
                    self._lock_file.release()

    def lend(self, collection_name: str) -> str:
        """Close collection ``collection_name`` here, flushed, so that one other process may open
        it (an :class:`EdgeClient` made with ``lock=False``) until :meth:`take_back`; returns the
        collection's own name. Meanwhile a call on it here raises."""
        name = self._resolve(collection_name)
        with self._guard:
            shard = self._shards.pop(name, None)
            if shard is not None:
                with _engine_errors(f"close collection {name!r}"):
                    shard.flush()
                    shard.close()
            self._lent.add(name)
        return name

    def take_back(self, name: str) -> None:
        """Collection ``name`` is back from the process it was lent to (it closed it)."""
        with self._guard:
            self._lent.discard(name)

    # -- aliases -------------------------------------------------------------------------------

    def get_aliases(self) -> qm.CollectionsAliasesResponse:
        return qm.CollectionsAliasesResponse(
            aliases=[
                qm.AliasDescription(alias_name=alias, collection_name=target)
                for alias, target in sorted(self._aliases().items())
            ]
        )

    def get_collection_aliases(self, collection_name: str) -> qm.CollectionsAliasesResponse:
        every = self.get_aliases().aliases
        return qm.CollectionsAliasesResponse(
            aliases=[a for a in every if a.collection_name == collection_name]
        )

    def update_collection_aliases(
        self, change_aliases_operations: Sequence[Any], **kwargs: Any
    ) -> bool:
        """Applies every change or none: the alias file is replaced in one step."""
        with self._guard:
            aliases = dict(self._aliases())
            for operation in change_aliases_operations:
                if isinstance(operation, qm.CreateAliasOperation):
                    create = operation.create_alias
                    if not self.collection_exists(create.collection_name):
                        raise SinkError(f"collection {create.collection_name!r} does not exist")
                    aliases[create.alias_name] = create.collection_name
                elif isinstance(operation, qm.DeleteAliasOperation):
                    name = operation.delete_alias.alias_name
                    if aliases.pop(name, None) is None:
                        raise SinkError(f"alias {name!r} does not exist")
                elif isinstance(operation, qm.RenameAliasOperation):
                    rename = operation.rename_alias
                    if rename.old_alias_name not in aliases:
                        raise SinkError(f"alias {rename.old_alias_name!r} does not exist")
                    aliases[rename.new_alias_name] = aliases.pop(rename.old_alias_name)
                else:
                    raise SinkError(f"the edge engine cannot apply {type(operation).__name__}")
            self._save_aliases(aliases)
        return True

    def _aliases(self) -> dict[str, str]:
        if self._alias_map is None:
            path = self.root / _ALIAS_FILE
            try:
                self._alias_map = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                self._alias_map = {}
            except (OSError, ValueError) as exc:
                raise SinkError(f"cannot read the aliases in {path}: {exc}") from None
        return self._alias_map

    def _save_aliases(self, aliases: dict[str, str]) -> None:
        # Readers see the old aliases or the new, never a mix.
        write_json_atomic(self.root / _ALIAS_FILE, aliases)
        self._alias_map = dict(aliases)

    def _resolve(self, name: str) -> str:
        """The collection behind ``name`` when it is an alias, else ``name`` itself."""
        return self._aliases().get(name, name)

    # -- internals -----------------------------------------------------------------------------

    def _folder(self, name: str) -> Path:
        # A collection name becomes a folder name: keep it from leaving the root.
        if not name or name in {".", ".."} or "/" in name or "\\" in name or "\x00" in name:
            raise SinkError(f"collection name {name!r} cannot be used by the edge engine")
        return self.root / name

    def _config(self, name: str) -> dict[str, Any]:
        with self._guard:
            if name not in self._configs:
                path = self._folder(name) / _CONFIG_FILE
                try:
                    self._configs[name] = json.loads(path.read_text(encoding="utf-8"))
                except FileNotFoundError:
                    raise SinkError(f"collection {name!r} does not exist") from None
                except (OSError, ValueError) as exc:
                    raise SinkError(f"collection {name!r}: cannot read {path}: {exc}") from None
            return self._configs[name]

    def _save_config(self, name: str, config: dict[str, Any]) -> None:
        write_json_atomic(self._folder(name) / _CONFIG_FILE, config)  # never a half-written file
        self._configs[name] = config

    def _shard(self, name: str) -> edge.EdgeShard:
        if self._closed:
            raise SinkError("the embedded Qdrant is closed")
        with self._guard:
            if name in self._lent:
                raise SinkError(f"collection {name!r} is lent to the sync's writer process")
            shard = self._shards.get(name)
            if shard is None:
                self._config(name)  # a clear error when the collection does not exist
                with _engine_errors(f"open collection {name!r}"):
                    shard = edge.EdgeShard.load(str(self._folder(name) / _SHARD_DIR))
                self._shards[name] = shard
            return shard

    def _reopen(self, name: str, config: dict[str, Any]) -> None:
        """Close collection ``name`` and open it with ``config``'s parameters, which the engine
        checks against its segments and keeps on disk."""
        shard = self._shard(name)
        with _engine_errors(f"apply new parameters to {name!r}"):
            shard.flush()
            shard.close()
            del self._shards[name]
            self._shards[name] = edge.EdgeShard.load(
                str(self._folder(name) / _SHARD_DIR), _edge_config(config)
            )

    def _update(self, name: str, operation: Any, action: str) -> None:
        shard = self._shard(name)
        with _engine_errors(f"{action} in {name!r}"):
            shard.update(operation)

    def _written(self, name: str, count: int) -> None:
        """``count`` points were written to collection ``name``: seal the segment being written
        once it holds a full segment's vectors.

        Sealing turns the engine's appendable segment (its points in RAM, no graph: searched by
        scanning) into a segment on disk built as the collection's parameters say (graph, int8
        copy), and hands the heap that freed back to the OS. A bulk load so builds each graph
        once, a segment at a time, with bounded memory. Other writes go on meanwhile: the engine
        takes them as a server's shard does during an optimization.
        """
        config = self._config(name)
        with self._guard:
            unsealed = self._unsealed.get(name, 0) + count
            full = unsealed >= _seal_points(config)
            self._unsealed[name] = 0 if full else unsealed
        if not full:
            return
        with self._sealing:
            shard = self._shard(name)
            with _engine_errors(f"seal a segment of {name!r}"):
                shard.flush()
                shard.optimize()
            _release_freed_memory()


@contextmanager
def _engine_errors(action: str) -> Iterator[None]:
    """The engine raises bare ``Exception``s; give them the action and the connector's type."""
    try:
        yield
    except ConnectorError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())
        if "WouldBlock" in text:
            raise SinkError(
                f"{action}: the embedded Qdrant collection is in use by another process"
            ) from exc
        raise SinkError(f"{action}: {text or type(exc).__name__}") from exc


def _completed() -> qm.UpdateResult:
    return qm.UpdateResult(operation_id=None, status=qm.UpdateStatus.COMPLETED)


def _payload_target(body: qm.SetPayload) -> list[qm.ExtendedPointId] | qm.Filter:
    if body.points is not None:
        return body.points
    if body.filter is not None:
        return body.filter
    raise SinkError("a payload update names neither points nor a filter")


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    # Stored as JSON, as a server does: datetimes and UUIDs become strings.
    return json.loads(json.dumps(value, default=str))


def _distance_name(distance: qm.Distance) -> str:
    distance = qm.Distance(distance)
    if distance not in _DISTANCES:
        raise SinkError(f"the edge engine has no distance {distance.value!r}")
    return distance.value


def _dense_params(entry: dict[str, Any]) -> edge.EdgeVectorParams:
    return edge.EdgeVectorParams(
        size=entry["size"],
        distance=_DISTANCES[qm.Distance(entry["distance"])],
        on_disk=entry.get("on_disk"),
    )


def _seal_points(config: dict[str, Any]) -> int:
    """Points of collection ``config`` whose dense vectors fill one segment (a sparse-only
    collection counts 256 bytes a point)."""
    point_bytes = max(sum(4 * v["size"] for v in config["dense"].values()), 256)
    return max(_SEAL_MIN_POINTS, _segment_kb(config) * 1024 // point_bytes)


def _segment_kb(config: dict[str, Any]) -> int:
    return int(config.get("index", {}).get("max_segment_kb", SEGMENT_KB))


def _segment_entry(optimizers: qm.OptimizersConfigDiff | None) -> dict[str, Any]:
    if optimizers is None:
        return {}
    unsupported = sorted(
        k for k, v in optimizers.model_dump(exclude_none=True).items() if k != "max_segment_size"
    )
    if unsupported:
        raise SinkError(f"the edge engine cannot set optimizer {', '.join(unsupported)}")
    if optimizers.max_segment_size is None:
        return {}
    return {"max_segment_kb": optimizers.max_segment_size}


def _release_freed_memory() -> None:
    """Hand the heap the engine freed back to the OS. glibc keeps freed blocks for reuse, and
    after the engine rewrites a segment that is most of the process's memory: 600 MB kept at
    200,000 points, 250 MB in use. Nothing to do with another C library."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def _edge_config(config: dict[str, Any]) -> edge.EdgeConfig:
    """The engine's configuration of a collection, from its ``collection.json``."""
    dense, sparse = config["dense"], config["sparse"]
    engine_sparse = dict(sparse) or ({} if dense else {_PLACEHOLDER: {"idf": False}})
    index = config.get("index", {})
    hnsw = None
    if "m" in index or "ef_construct" in index:
        hnsw = edge.HnswIndexConfig(
            m=index.get("m", _HNSW_DEFAULT["m"]),
            ef_construct=index.get("ef_construct", _HNSW_DEFAULT["ef_construct"]),
            full_scan_threshold=_HNSW_DEFAULT["full_scan_threshold"],
        )
    quantization = None
    if index.get("quantization") == "int8":
        # The int8 copy is what the graph search reads: it stays in RAM, the originals on disk.
        quantization = edge.ScalarQuantizationConfig(type=edge.ScalarType.Int8, always_ram=True)
    return edge.EdgeConfig(
        vectors={n: _dense_params(v) for n, v in dense.items()},
        sparse_vectors={n: _sparse_params(v["idf"]) for n, v in engine_sparse.items()},
        on_disk_payload=index.get("on_disk_payload"),
        hnsw_config=hnsw,
        quantization_config=quantization,
        optimizers=edge.EdgeOptimizersConfig(
            max_segment_size=_segment_kb(config),
            # A segment under this size is left as it is written (searched by scanning): a sealed
            # one must be over it, or sealing would keep nothing out of RAM.
            indexing_threshold=min(_INDEXING_KB, _segment_kb(config) // 2),
        ),
    )


def _index_entry(
    index: dict[str, Any],
    on_disk_payload: bool | None,
    hnsw: qm.HnswConfigDiff | None,
    quantization: Any,
    collection: str,
) -> dict[str, Any]:
    """``index`` (a collection's stored index parameters) with the given changes."""
    index = dict(index)
    if on_disk_payload is not None:
        index["on_disk_payload"] = on_disk_payload
    if hnsw is not None:
        for key in ("m", "ef_construct"):
            if getattr(hnsw, key) is not None:
                index[key] = getattr(hnsw, key)
    if quantization is None:
        return index
    scalar = getattr(quantization, "scalar", None)
    if scalar is None or scalar.type != qm.ScalarType.INT8:
        if index.get("quantization") == "int8":
            raise SinkError(
                f"collection {collection!r}: the edge engine cannot turn int8 quantization off "
                "on an existing collection (rebuild it with `connector migrate`, or keep it on)"
            )
        raise SinkError(f"the edge engine takes int8 scalar quantization only, not {quantization}")
    index["quantization"] = "int8"
    return index


def _search_params(params: qm.SearchParams | None) -> edge.SearchParams | None:
    if params is None:
        return None
    quantization = None
    if params.quantization is not None:
        quantization = edge.QuantizationSearchParams(
            rescore=params.quantization.rescore, oversampling=params.quantization.oversampling
        )
    return edge.SearchParams(
        hnsw_ef=params.hnsw_ef, exact=bool(params.exact), quantization=quantization
    )


def _sparse_params(idf: bool) -> edge.EdgeSparseVectorParams:
    return edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf if idf else None)


def _point_id(point: Any) -> Any:
    if isinstance(point, uuid.UUID):
        return str(point)
    if isinstance(point, str | int) and not isinstance(point, bool):
        return point
    raise SinkError(f"the edge engine takes point ids as UUID strings or integers, not {point!r}")


def _plain_id(point: Any) -> qm.ExtendedPointId:
    return str(point) if isinstance(point, uuid.UUID) else point


def _vectors(vector: Any) -> dict[str, Any]:
    if not isinstance(vector, Mapping):
        raise SinkError("the edge engine keeps named vectors only")
    out: dict[str, Any] = {}
    for name, value in vector.items():
        if isinstance(value, qm.SparseVector | SparseValues):
            out[name] = edge.SparseVector(value.indices, value.values)
        elif hasattr(value, "tolist"):
            out[name] = value.tolist()
        elif isinstance(value, list) and (not value or not isinstance(value[0], list)):
            out[name] = value
        else:
            raise SinkError(f"vector {name!r}: the edge engine takes dense or sparse vectors only")
    return out


def _vectors_back(vector: Any) -> dict[str, Any] | None:
    if vector is None:
        return None
    out: dict[str, Any] = {}
    for name, value in vector.items():
        if name == _PLACEHOLDER:
            continue
        if isinstance(value, edge.SparseVector):
            out[name] = qm.SparseVector(indices=list(value.indices), values=list(value.values))
        else:
            out[name] = value
    return out


def _selector(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, qm.PayloadSelectorInclude):
        return list(value.include)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    raise SinkError(f"the edge engine cannot select {value!r}")


def _record(record: Any) -> qm.Record:
    return qm.Record(
        id=_plain_id(record.id),
        payload=record.payload,
        vector=_vectors_back(record.vector),
    )


def _scored(point: Any) -> qm.ScoredPoint:
    return qm.ScoredPoint(
        id=_plain_id(point.id),
        version=point.version,
        score=point.score,
        payload=point.payload,
        vector=_vectors_back(point.vector),
    )


def _query(query: Any, using: str | None) -> Any:
    if isinstance(query, qm.NearestQuery):
        query = query.nearest
    if isinstance(query, qm.FusionQuery):
        if query.fusion == qm.Fusion.DBSF:
            return edge.Fusion.Dbsf()
        return edge.Fusion.Rrf(k=2)  # Qdrant's default constant
    if isinstance(query, qm.RrfQuery):
        rrf = query.rrf
        return edge.Fusion.Rrf(k=rrf.k if rrf.k is not None else 2, weights=rrf.weights)
    if isinstance(query, qm.SparseVector):
        vector: Any = edge.SparseVector(list(query.indices), list(query.values))
    elif hasattr(query, "tolist"):
        vector = query.tolist()
    elif isinstance(query, list) and all(isinstance(v, int | float) for v in query):
        vector = [float(v) for v in query]
    else:
        raise SinkError(f"the edge engine does not run {type(query).__name__} queries")
    return edge.Query.Nearest(vector, using=using)


def _prefetches(prefetch: qm.Prefetch | Sequence[qm.Prefetch] | None) -> list[Any] | None:
    if prefetch is None:
        return None
    items = [prefetch] if isinstance(prefetch, qm.Prefetch) else list(prefetch)
    return [
        edge.Prefetch(
            limit=item.limit if item.limit is not None else 10,
            query=_query(item.query, item.using) if item.query is not None else None,
            prefetches=_prefetches(item.prefetch),
            filter=_filter(item.filter) if item.filter is not None else None,
            score_threshold=item.score_threshold,
            params=_search_params(item.params),
        )
        for item in items
    ]


def _order_by(order: qm.OrderBy) -> edge.OrderBy:
    if order.start_from is not None:
        raise SinkError("the edge engine does not take start_from in order_by")
    desc = order.direction == qm.Direction.DESC
    return edge.OrderBy(order.key, direction=edge.Direction.Desc if desc else edge.Direction.Asc)


def _filter(flt: qm.Filter) -> edge.Filter:
    def conditions(items: Any) -> list[Any] | None:
        if items is None:
            return None
        items = items if isinstance(items, list) else [items]
        return [_condition(item) for item in items]

    if flt.min_should is not None:
        raise SinkError("the edge engine does not take min_should in filters")
    return edge.Filter(
        must=conditions(flt.must), should=conditions(flt.should), must_not=conditions(flt.must_not)
    )


def _condition(condition: Any) -> Any:
    if isinstance(condition, qm.Filter):
        return _filter(condition)
    if isinstance(condition, qm.HasIdCondition):
        return edge.HasIdCondition({_point_id(p) for p in condition.has_id})
    if isinstance(condition, qm.FieldCondition) and condition.match is not None:
        match = condition.match
        if isinstance(match, qm.MatchValue):
            return edge.FieldCondition(condition.key, match=edge.MatchValue(match.value))
        if isinstance(match, qm.MatchAny):
            return edge.FieldCondition(condition.key, match=edge.MatchAny(match.any))
        if isinstance(match, qm.MatchExcept):
            return edge.FieldCondition(condition.key, match=edge.MatchExcept(match.except_))
    raise SinkError(f"the edge engine does not take the filter condition {condition!r}")

"""A stand-in for a Qdrant server that records the requests the connector sends it."""

from __future__ import annotations

from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm


class ServerLike:
    """qdrant-client's local mode standing in for a server that keeps index parameters: each
    collection and write request is recorded with its keyword arguments, and the collection's
    HNSW, quantization and on-disk parameters it was sent are what it reports back (the local
    mode keeps none). Cluster parameters (shards, replicas, write ordering) are recorded, not
    applied: the local mode has one copy of everything."""

    def __init__(self) -> None:
        self.inner = QdrantClient(":memory:")
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.params: dict[str, dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create_collection(self, name: str, **kwargs: Any) -> bool:
        self.sent.append(("create_collection", kwargs))
        hnsw = kwargs.get("hnsw_config") or qm.HnswConfigDiff()
        self.params[name] = {
            "m": hnsw.m if hnsw.m is not None else 16,
            "ef_construct": hnsw.ef_construct or 100,
            "quantization": kwargs.get("quantization_config"),
            "on_disk_payload": kwargs.get("on_disk_payload"),
            "on_disk": {v: p.on_disk for v, p in (kwargs["vectors_config"] or {}).items()},
            "max_segment_size": getattr(kwargs.get("optimizers_config"), "max_segment_size", None),
        }
        plain = {k: kwargs.get(k) for k in ("vectors_config", "sparse_vectors_config", "metadata")}
        return bool(self.inner.create_collection(name, **plain))

    def update_collection(self, name: str, **kwargs: Any) -> bool:
        self.sent.append(("update_collection", kwargs))
        params = self.params[name]
        if kwargs.get("hnsw_config") is not None:
            diff = kwargs["hnsw_config"]
            params["m"] = diff.m if diff.m is not None else params["m"]
            params["ef_construct"] = diff.ef_construct or params["ef_construct"]
        if kwargs.get("quantization_config") is not None:
            quantization = kwargs["quantization_config"]
            params["quantization"] = None if quantization == qm.Disabled.DISABLED else quantization
        for vector, diff in (kwargs.get("vectors_config") or {}).items():
            params["on_disk"][vector] = diff.on_disk
        if kwargs.get("collection_params") is not None:
            params["on_disk_payload"] = kwargs["collection_params"].on_disk_payload
        if kwargs.get("optimizers_config") is not None:
            params["max_segment_size"] = kwargs["optimizers_config"].max_segment_size
        return bool(self.inner.update_collection(name, metadata=kwargs.get("metadata")))

    def get_collection(self, name: str) -> qm.CollectionInfo:
        info = self.inner.get_collection(name)
        params = self.params.get(_target(self.inner, name))
        if params is None:
            return info
        config = info.config
        vectors = config.params.vectors
        assert isinstance(vectors, dict)
        return info.model_copy(
            update={
                "config": config.model_copy(
                    update={
                        "hnsw_config": config.hnsw_config.model_copy(
                            update={"m": params["m"], "ef_construct": params["ef_construct"]}
                        ),
                        "quantization_config": params["quantization"],
                        "optimizer_config": config.optimizer_config.model_copy(
                            update={"max_segment_size": params["max_segment_size"]}
                        ),
                        "params": config.params.model_copy(
                            update={
                                "on_disk_payload": params["on_disk_payload"],
                                "vectors": {
                                    v: p.model_copy(update={"on_disk": params["on_disk"][v]})
                                    for v, p in vectors.items()
                                },
                            }
                        ),
                    }
                )
            }
        )

    def upsert(self, name: str, points: Any, **kwargs: Any) -> qm.UpdateResult:
        return self._write("upsert", name, points, **kwargs)  # type: ignore[no-any-return]

    def update_vectors(self, name: str, points: Any, **kwargs: Any) -> qm.UpdateResult:
        return self._write("update_vectors", name, points, **kwargs)  # type: ignore[no-any-return]

    def batch_update_points(self, name: str, operations: Any, **kwargs: Any) -> Any:
        return self._write("batch_update_points", name, operations, **kwargs)

    def delete(self, name: str, selector: Any, **kwargs: Any) -> qm.UpdateResult:
        return self._write("delete", name, selector, **kwargs)  # type: ignore[no-any-return]

    def _write(self, method: str, name: str, what: Any, **kwargs: Any) -> Any:
        self.sent.append((method, dict(kwargs)))
        kwargs.pop("ordering", None)  # the local mode has no replicas to order
        return getattr(self.inner, method)(name, what, **kwargs)

    def requests(self, method: str) -> list[dict[str, Any]]:
        return [kwargs for name, kwargs in self.sent if name == method]


def _target(client: QdrantClient, name: str) -> str:
    aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
    return aliases.get(name, name)

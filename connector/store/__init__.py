"""The Qdrant gateway: the client, retries and error translation, the collection schema, reads and
writes. Nothing outside this package reaches into a Qdrant client.

The same code serves the embedded engines (qdrant-client's local mode, Qdrant's own engine
in-process) and a Qdrant server: only the client's construction differs.

- :class:`Store`: one Qdrant; a named method per request the connector makes.
- :class:`Writer`: a sync's side of one chunk collection (change state, background writes,
  deletes), counting acknowledged writes into :class:`WriteCounts`.
- :class:`CollectionLayout`: the vectors a chunk collection needs; :func:`create_runs_collection`
  makes the runs collection. Chunk collections are created by a first sync or by
  :mod:`connector.store.migrator`.
- :func:`copy_local_store`: a local-mode store copied into the edge engine;
  :func:`local_collections_left` finds one not copied yet.
"""

from __future__ import annotations

from connector.store._client import make_client
from connector.store._copy import CopiedCollection, copy_local_store, local_collections_left
from connector.store._gateway import Store, WriteCounts
from connector.store._points import PointWrite, SparseValues
from connector.store._schema import CollectionLayout, create_runs_collection
from connector.store._writer import PointState, WriteBatch, Writer, as_uuid_int

__all__ = [
    "CollectionLayout",
    "CopiedCollection",
    "PointState",
    "PointWrite",
    "SparseValues",
    "Store",
    "WriteBatch",
    "WriteCounts",
    "Writer",
    "as_uuid_int",
    "copy_local_store",
    "create_runs_collection",
    "local_collections_left",
    "make_client",
]

"""Schema migrations on the embedded Qdrant: fresh, old, re-run, and the alias-swapping rebuild."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from connector.errors import CollectionMismatch, ConfigError, SchemaOutdated, SinkError
from connector.pipeline.syncer import SparseTarget, Syncer
from connector.sparse.generator import SparseVectorGenerator
from connector.store import CollectionLayout, Store, Writer
from connector.store.edge import EdgeClient
from connector.store.migrator import SCHEMA_KEY, Migrator, discover
from tests.fakes import FakeDense, ListSource, chunk
from tests.paths import REPO

ROOT = REPO
IDS = ["0001_create_collections", "0002_sparse_vector"]
CORPUS = [
    chunk(f"c{i}", f"{topic} measured in run {i}", n=i)
    for i, topic in enumerate(
        [
            "Boundary layer transition on a flat plate",
            "Heat transfer to a blunt body in hypersonic flight",
            "Buckling of thin cylindrical shells",
            "Flutter of a cantilever wing",
            "Shock waves ahead of a cone",
            "Skin friction of a rough plate",
            "Lift of a delta wing at high incidence",
        ]
    )
]


class Guarded:
    """A client whose every call holds a lock of its own, so that a probe can hold it across
    several calls (one consistent look, as a search app's) while the store's requests wait."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                return attr(*args, **kwargs)

        return call


@pytest.fixture(params=["local", "edge"])
def client(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    # Both embedded engines: the alias swap must be atomic on Qdrant's own engine too.
    path = str(tmp_path / "qdrant")
    return Guarded(QdrantClient(path=path) if request.param == "local" else EdgeClient(path))


@pytest.fixture
def sink(client: Any):
    store = Store(client)
    yield Writer(store, "chunks", batch_size=3)
    store.close()


def migrator_of(sink: Writer, wanted: CollectionLayout) -> Migrator:
    return Migrator(sink.store, sink.collection, wanted, "connector_runs")


def made_before_aliases(client: Any, dim: int = 16) -> None:
    """What an earlier version made: the collection under the configured name, dense only, with
    no schema record (a sync today creates it behind an alias, at the latest schema)."""
    client.create_collection(
        "chunks", vectors_config={"fake": qm.VectorParams(size=dim, distance=qm.Distance.COSINE)}
    )


def layout(dim: int = 16) -> CollectionLayout:
    return CollectionLayout(dense={"fake": dim}, sparse={"qdrant-bm25": True})


def bm25() -> SparseTarget:
    return SparseTarget(SparseVectorGenerator(), "qdrant-bm25", "qdrant-bm25", idf=True)


def aliases(client: Any) -> dict[str, str]:
    return {a.alias_name: a.collection_name for a in client.get_aliases().aliases}


def points(client: Any, name: str = "chunks") -> dict[str, qm.Record]:
    records, _ = client.scroll(name, limit=1000, with_payload=True, with_vectors=True)
    return {str(r.id): r for r in records}


def test_migrations_are_discovered_in_order_with_their_descriptions() -> None:
    migrations = discover()
    assert [m.id for m in migrations] == IDS
    assert migrations[1].description.startswith("Add the configured sparse named vector")


def test_fresh_to_latest_then_a_second_run_is_a_no_op(sink: Writer, client: Any) -> None:
    migrator = migrator_of(sink, layout())
    status = migrator.status()
    assert not status.exists and [m.id for m in status.pending] == IDS

    assert migrator.migrate() == IDS
    assert aliases(client) == {"chunks": "chunks__1"}
    params = client.get_collection("chunks__1").config.params
    assert params.vectors["fake"].size == 16
    assert params.sparse_vectors["qdrant-bm25"].modifier == qm.Modifier.IDF
    assert client.collection_exists("connector_runs")
    assert not client.get_collection("connector_runs").config.params.vectors
    status = migrator.status()
    assert status.pending == [] and list(status.applied) == IDS and status.aliased

    metadata = client.get_collection("chunks").config.metadata
    assert migrator.migrate() == []
    assert client.get_collection("chunks").config.metadata == metadata
    assert migrator.prepare_for_sync() == []


def test_old_collection_to_latest_keeps_its_points(sink: Writer, client: Any) -> None:
    # What an earlier version made: the collection under the configured name, dense only.
    made_before_aliases(client)
    Syncer(sink, [FakeDense()]).run(ListSource(CORPUS))
    before = points(client)
    assert not client.get_collection("chunks").config.params.sparse_vectors

    migrator = migrator_of(sink, layout())
    with pytest.raises(SchemaOutdated, match=r"schema version 0, .* needs 2 .*connector migrate"):
        migrator.prepare_for_sync()
    assert migrator.migrate() == IDS

    after = points(client)
    assert after.keys() == before.keys()
    for pid, record in before.items():
        assert after[pid].payload == record.payload
        assert after[pid].vector == record.vector
    assert set(client.get_collection("chunks").config.params.sparse_vectors) == {"qdrant-bm25"}
    assert aliases(client) == {}  # left under its own name; only a rebuild moves it
    assert migrator.prepare_for_sync() == [] and migrator.migrate() == []

    # The sparse slot is there: the next sync computes sparse vectors only.
    dense = FakeDense()
    report = Syncer(sink, [dense], bm25()).run(ListSource(CORPUS))
    assert dense.calls == 0 and report.writes.vectors_updated == len(CORPUS)


def test_a_half_applied_migration_is_finished_by_the_next_run(sink: Writer, client: Any) -> None:
    migrator = migrator_of(sink, layout())
    migrator.migrate()
    # Forget that 0002 ran (as if the process died between its change and its record).
    record = client.get_collection("chunks").config.metadata[SCHEMA_KEY]
    del record["applied"]["0002_sparse_vector"]
    client.update_collection("chunks__1", metadata={SCHEMA_KEY: record})
    assert [m.id for m in migrator.status().pending] == ["0002_sparse_vector"]
    assert migrator.migrate() == ["0002_sparse_vector"]
    assert migrator.status().pending == []


def test_rebuild_for_a_model_of_another_size_keeps_the_alias_answering(
    sink: Writer, client: Any
) -> None:
    migrator_of(sink, layout(16)).migrate()
    Syncer(sink, [FakeDense(dim=16)], bm25()).run(ListSource(CORPUS))
    before = points(client)

    bigger = FakeDense(dim=32, version="2")
    with pytest.raises(CollectionMismatch, match="run `connector migrate`"):
        Syncer(sink, [bigger], bm25()).run(ListSource(CORPUS))
    migrator = migrator_of(sink, layout(32))
    assert migrator.status().rebuild == {"fake": (16, 32)}
    with pytest.raises(SchemaOutdated, match="no model for it"):
        migrator.migrate()

    seen: list[tuple[str, int]] = []
    problems: list[str] = []

    def probe() -> int:
        """Ask the alias what a search app would: a full answer, from one whole collection."""
        size = client.get_collection("chunks").config.params.vectors["fake"].size
        hits = client.query_points("chunks", query=[1.0] * size, using="fake", limit=100)
        count = client.count("chunks", exact=True).count
        if len(hits.points) != len(CORPUS) or count != len(CORPUS):
            problems.append(f"{len(hits.points)} hits, {count} points at size {size}")
        return size

    def on_step(step: str, details: dict) -> None:
        with client.lock:  # one look, with no request of the rebuild in between
            seen.append((step, probe()))

    done = threading.Event()

    def reader() -> None:  # a search app querying the alias while the rebuild runs
        while not done.is_set():
            with client.lock:
                probe()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert migrator.migrate({"fake": bigger}, on_step=on_step) == ["rebuild"]
    finally:
        done.set()
        thread.join()

    assert problems == []
    steps = [step for step, _ in seen]
    assert steps[0] == "created" and steps[-3:] == ["verified", "swapped", "dropped"]
    assert "copied" in steps
    # The old, whole collection answers until the swap; the new, whole one after it.
    assert all(size == 16 for step, size in seen[: steps.index("swapped")])
    assert all(size == 32 for step, size in seen[steps.index("swapped") :])
    assert aliases(client) == {"chunks": "chunks__2"}
    assert not client.collection_exists("chunks__1")

    after = points(client)
    assert after.keys() == before.keys()
    for pid, record in after.items():
        old = before[pid]
        assert record.vector["qdrant-bm25"] == old.vector["qdrant-bm25"]  # copied as it was
        assert record.vector["fake"] == pytest.approx(bigger.encode([old.payload["text"]])[0])
        assert record.payload["encoded_with"]["fake"] == bigger.signature
        assert record.payload["text"] == old.payload["text"]
    assert list(migrator.status().applied) == IDS  # the schema record moved with it

    dense = FakeDense(dim=32, version="2")
    report = Syncer(sink, [dense], bm25()).run(ListSource(CORPUS))
    assert dense.calls == 0 and report.counts.skipped_unchanged == len(CORPUS)


def test_rebuild_of_a_collection_made_before_aliases(sink: Writer, client: Any) -> None:
    made_before_aliases(client, dim=16)
    Syncer(sink, [FakeDense(dim=16)]).run(ListSource(CORPUS))
    bigger = FakeDense(dim=8, version="2")
    migrator = migrator_of(sink, layout(8))
    assert migrator.migrate({"fake": bigger}) == [*IDS, "rebuild"]
    assert aliases(client) == {"chunks": "chunks__1"}
    stored = points(client)
    assert len(stored) == len(CORPUS)
    assert all(len(r.vector["fake"]) == 8 for r in stored.values())


def test_a_failed_rebuild_leaves_the_old_collection_behind_the_alias(
    sink: Writer, client: Any
) -> None:
    migrator_of(sink, layout(16)).migrate()
    Syncer(sink, [FakeDense(dim=16)]).run(ListSource(CORPUS))
    client.upsert("chunks", [qm.PointStruct(id=1, vector={"fake": [0.25] * 16}, payload={})])
    migrator = migrator_of(sink, layout(32))
    with pytest.raises(SinkError, match="point 1 has no text"):
        migrator.migrate({"fake": FakeDense(dim=32)})
    assert aliases(client) == {"chunks": "chunks__1"}
    assert not client.collection_exists("chunks__2")
    assert client.count("chunks").count == len(CORPUS) + 1


def test_numbering_gaps_and_missing_apply_are_errors(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_first.py").write_text('"""First."""\ndef apply(ctx):\n    pass\n')
    (folder / "0003_third.py").write_text('"""Third."""\ndef apply(ctx):\n    pass\n')
    with pytest.raises(ConfigError, match="without gaps"):
        discover(folder)
    (folder / "0002_second.py").write_text('"""No apply."""\n')
    with pytest.raises(ConfigError, match="0002_second.py: has no apply"):
        discover(folder)
    with pytest.raises(ConfigError, match="not found"):
        discover(tmp_path / "missing")


def test_another_migrations_package_on_the_path_does_not_stand_in(
    tmp_path: Path, monkeypatch
) -> None:
    # A project's own `migrations` package in the working directory, as Django's or Alembic's.
    theirs = tmp_path / "migrations"
    theirs.mkdir()
    (theirs / "__init__.py").write_text("")
    (theirs / "0001_initial.py").write_text("raise SystemExit('not ours')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert [m.id for m in discover()] == IDS


def test_a_built_wheel_ships_the_migrations_and_finds_them_installed(tmp_path: Path) -> None:
    # Built from a copy, so that setuptools' build folder does not land in the checkout.
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".*")
    for part in ("connector", "migrations", "tui"):
        shutil.copytree(ROOT / part, source / part, ignore=ignore)
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"migrations/{i}.py" for i in IDS} <= set(names)
    assert "connector/schemas/processing_summary.schema.json" in names

    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)  # what an installer lays out, without touching this venv
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import connector, migrations; "
        "from connector.store.migrator import discover, MIGRATIONS_DIR; "
        "print(connector.__file__); print(MIGRATIONS_DIR); "
        "print(' '.join(m.id for m in discover()))"
    )
    found = subprocess.run(
        [sys.executable, "-c", script, str(site)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert found.returncode == 0, found.stderr
    connector_file, migrations_dir, ids = found.stdout.splitlines()
    assert connector_file.startswith(str(site)) and migrations_dir == str(site / "migrations")
    assert ids.split() == IDS

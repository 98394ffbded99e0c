"""BM25 avg_len = "auto": measured once over the source, recorded on the collection, reused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.pipeline.syncer import Syncer
from connector.settings import load_settings
from connector.sparse.avglen import measure_avg_len, recorded_avg_len, resolve_avg_len
from connector.sparse.bm25 import Bm25
from connector.store import Store, Writer
from connector.store.edge import EdgeClient
from connector.wiring import sparse_target
from tests.fakes import FakeDense, ListSource, chunk

CORPUS = [
    chunk("a", "Boundary layer transition on a flat plate at supersonic speed."),
    chunk("b", "Heat transfer to a blunt body in hypersonic flight, measured in a shock tunnel."),
    chunk("c", "Buckling of thin cylindrical shells."),
]


class UnreadableSource(ListSource):
    """A source that must not be read."""

    def __iter__(self) -> Iterator:
        raise AssertionError("the source was read")


def settings(avg_len: object = "auto", model: str = "qdrant-bm25"):
    return load_settings(None, {"sparse": {"model": model, "bm25": {"avg_len": avg_len}}})


@pytest.fixture
def sink(tmp_path: Path):
    store = Store(EdgeClient(tmp_path / "qdrant"))
    yield Writer(store, "chunks")
    store.close()


def test_measured_mean_counts_kept_tokens() -> None:
    texts = [c.text for c in CORPUS]
    expected = sum(len(Bm25().tokenize(t)) for t in texts) / len(texts)
    assert measure_avg_len(texts, settings()) == (round(expected, 2), 3)
    assert measure_avg_len([], settings()) == (0.0, 0)


def test_first_sync_measures_records_and_later_runs_reuse(sink: Writer) -> None:
    conf = settings()
    value = resolve_avg_len(conf, sink.store, "chunks", ListSource(CORPUS))
    assert value == measure_avg_len([c.text for c in CORPUS], conf)[0]

    target = sparse_target(conf, avg_len=value)
    Syncer(sink, [FakeDense()], target).run(ListSource(CORPUS))
    metadata = sink.store.metadata("chunks")
    recorded = metadata["connector"]["vectors"]["qdrant-bm25"]
    assert recorded["options"]["avg_len"] == value and recorded["options"]["avg_len_auto"]
    assert f"avg_len={value}" in recorded["signature"]
    assert recorded_avg_len(metadata, "qdrant-bm25") == value

    # The recorded value wins: the source is not read again, and nothing is re-encoded.
    assert resolve_avg_len(conf, sink.store, "chunks", UnreadableSource(CORPUS)) == value
    report = Syncer(sink, [FakeDense()], sparse_target(conf, avg_len=value)).run(ListSource(CORPUS))
    assert (report.counts.encoded, report.counts.skipped_unchanged) == (0, 3)


def test_a_configured_number_is_used_as_is(sink: Writer) -> None:
    conf = settings(avg_len=120)
    assert resolve_avg_len(conf, sink.store, "chunks", UnreadableSource(CORPUS)) is None
    target = sparse_target(conf)
    assert "avg_len=120" in target.signature
    assert target.options["avg_len"] == 120 and not target.options["avg_len_auto"]


def test_auto_needs_a_bm25_model_and_a_resolved_value(sink: Writer) -> None:
    with pytest.raises(ConfigError, match="needs a BM25 model"):
        resolve_avg_len(settings(model="splade"), sink.store, "chunks", ListSource(CORPUS))
    with pytest.raises(ConfigError, match="not resolved"):
        sparse_target(settings())


def test_search_without_a_recorded_value_still_builds_the_model(sink: Writer) -> None:
    assert resolve_avg_len(settings(), sink.store, "chunks") == 256.0


@pytest.mark.parametrize("bad", ["fast", 0, -3])
def test_bad_avg_len_names_the_key(bad: object) -> None:
    with pytest.raises(ConfigError, match="sparse.bm25.avg_len"):
        settings(avg_len=bad)

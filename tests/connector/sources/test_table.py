"""Parquet and CSV files as sources: one record per row, columns named by the settings."""

from __future__ import annotations

import datetime
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.errors import InvalidRecord, SourceError
from connector.settings import load_settings
from connector.sources import Source, TableSource, open_source
from connector.store.edge import EdgeClient
from connector.wiring import build_syncer
from tests.fakes import FakeDense


def _parquet(path: Path, columns: dict[str, list[object]], **options: object) -> Path:
    pq.write_table(pa.table(columns), path, **options)  # type: ignore[arg-type]
    return path


def test_parquet_rows_become_records_with_the_mapped_columns(tmp_path: Path) -> None:
    path = _parquet(
        tmp_path / "docs.parquet",
        {
            "doc": [7, 8],
            "body": ["first text", "second text"],
            "lang": ["en", "fr"],
            "day": [datetime.date(2026, 1, 2), None],
            "price": [Decimal("1.50"), Decimal("2.25")],
            "tags": [["a", "b"], []],
            "blob": [b"\x00\xff", None],
            "point": [{"x": 1, "y": 2}, None],
            "ignored": ["x", "y"],
        },
    )
    source = TableSource(
        path,
        id_field="doc",
        text_field="body",
        metadata_fields=("lang", "day", "price", "tags", "blob", "point"),
    )
    assert isinstance(source, Source)
    assert source.name == str(path.resolve())
    records = list(source)
    assert [(r.chunk_id, r.text, r.location) for r in records] == [
        ("7", "first text", f"{path}:row 1"),
        ("8", "second text", f"{path}:row 2"),
    ]
    assert records[0].metadata == {
        "lang": "en",
        "day": "2026-01-02",
        "price": 1.5,
        "tags": ["a", "b"],
        "blob": "00ff",
        "point": {"x": 1, "y": 2},
    }
    assert records[1].metadata == {
        "lang": "fr",
        "day": None,
        "price": 2.25,
        "tags": [],
        "blob": None,
        "point": None,
    }
    assert source.bytes_read == source.total_bytes == path.stat().st_size
    assert source.skips.count == 0


def _either(path: Path, csv_text: str, columns: dict[str, list[object]]) -> Path:
    """A CSV or Parquet file by ``path``'s suffix, of the given content."""
    if path.suffix == ".csv":
        path.write_text(csv_text, encoding="utf-8")
        return path
    return _parquet(path, columns)


BAD_ROWS: dict[str, list[object]] = {
    "id": ["ok", None, "  ", "no-text", "blank", "typed"],
    "text": ["kept", "a", "b", None, "  \n", "c"],
}


def test_parquet_rows_without_id_or_text_are_skipped_with_the_jsonl_kinds(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "bad.parquet", BAD_ROWS)
    source = TableSource(path)
    assert [r.chunk_id for r in source] == ["ok", "typed"]
    assert [(s.location, s.kind, s.reason, s.chunk_id) for s in source.skips.entries] == [
        (f"{path}:row 2", "missing_id", 'missing "id"', None),
        (f"{path}:row 3", "bad_id", 'empty "id"', None),
        (f"{path}:row 4", "missing_text", 'missing "text"', "no-text"),
        (f"{path}:row 5", "empty_text", 'empty "text"', "blank"),
    ]
    assert source.skips.protected_ids == {"no-text", "blank"}


def test_ill_typed_ids_and_texts_are_skipped(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "typed.parquet", {"id": [1.5, 2.0], "text": ["a", "b"]})
    source = TableSource(path)
    assert list(source) == []
    assert {s.reason for s in source.skips.entries} == {
        '"id" must be a string or an integer, got number'
    }
    path = _parquet(tmp_path / "numbers.parquet", {"id": [True, False], "text": [1, 2]})
    source = TableSource(path)
    assert list(source) == []
    assert [s.kind for s in source.skips.entries] == ["bad_id", "bad_id"]
    path = _parquet(tmp_path / "texts.parquet", {"id": ["a"], "text": [3]})
    source = TableSource(path)
    assert list(source) == []
    assert [(s.kind, s.reason) for s in source.skips.entries] == [
        ("bad_text", '"text" must be a string, got number')
    ]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_strict_raises_the_first_bad_row(tmp_path: Path, suffix: str) -> None:
    path = _either(tmp_path / f"bad{suffix}", "id,text\nok,kept\n,orphan\n", BAD_ROWS)
    source = TableSource(path, strict=True)
    with pytest.raises(InvalidRecord) as caught:
        list(source)
    assert (caught.value.kind, caught.value.location) == (
        ("missing_id", f"{path}:row 2") if suffix == ".parquet" else ("bad_id", f"{path}:row 2")
    )


def test_a_large_parquet_file_is_streamed_batch_by_batch(tmp_path: Path) -> None:
    rows = 100_000
    table = pa.table(
        {
            "id": [f"d{i}" for i in range(rows)],
            "text": [f"text number {i} " * 8 for i in range(rows)],
        }
    )
    decoded = table.nbytes
    path = tmp_path / "big.parquet"
    pq.write_table(table, path, row_group_size=1_000)
    del table
    assert pq.ParquetFile(path).metadata.num_row_groups == 100
    source = TableSource(path)
    records = iter(source)
    before = pa.total_allocated_bytes()
    for _ in range(3_000):
        next(records)
    held = pa.total_allocated_bytes() - before
    assert 0 < source.bytes_read < source.total_bytes // 10  # type: ignore[operator]
    assert held < decoded // 20, "only a batch or a row group is held, never the whole file"
    assert sum(1 for _ in records) == rows - 3_000
    assert source.bytes_read == source.total_bytes


def test_csv_rows_with_quotes_bom_short_rows_and_long_fields(tmp_path: Path) -> None:
    long_text = "word " * 40_000  # over the csv module's default field limit of 128 KiB
    path = tmp_path / "rows.csv"
    path.write_text(
        "\ufeffkey,content,author\n"
        '1,"a text, with a comma\nand a line break",Ann\n'
        "2,,Bob\n"
        "3\n"
        f"4,{long_text},\n",
        encoding="utf-8",
    )
    source = TableSource(path, id_field="key", text_field="content", metadata_fields=("author",))
    records = list(source)
    assert [(r.chunk_id, r.metadata, r.location) for r in records] == [
        ("1", {"author": "Ann"}, f"{path}:row 1"),
        ("4", {"author": ""}, f"{path}:row 4"),
    ]
    assert records[0].text == "a text, with a comma\nand a line break"
    assert records[1].text == long_text
    assert [(s.kind, s.location) for s in source.skips.entries] == [
        ("empty_text", f"{path}:row 2"),
        ("missing_text", f"{path}:row 3"),
    ]
    assert source.bytes_read == source.total_bytes


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_missing_column_is_a_source_error(tmp_path: Path, suffix: str) -> None:
    path = _either(tmp_path / f"cols{suffix}", "id,body\n1,x\n", {"id": [1], "body": ["x"]})
    source = TableSource(path, metadata_fields=("lang",))
    with pytest.raises(SourceError) as caught:
        list(source)
    assert not isinstance(caught.value, InvalidRecord)
    assert str(caught.value) == (
        f"{path}: no column 'text', 'lang' (see source.id_field, text_field, metadata_fields)"
    )


def test_unreadable_tables_are_source_errors(tmp_path: Path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"id,text\n1,caf\xe9\n")
    with pytest.raises(SourceError, match=r"latin\.csv: not valid UTF-8 \(byte 0xE9\)"):
        list(TableSource(latin))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(SourceError, match=r"broken\.parquet: not a readable Parquet file"):
        list(TableSource(broken))
    huge = tmp_path / "huge.csv"
    huge.write_text("id,text\n1," + "x" * (9 * 1024 * 1024) + "\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"huge\.csv:\d+: bad CSV: field larger than field limit"):
        list(TableSource(huge))
    with pytest.raises(SourceError, match=r"table\.json: not a \.parquet or \.csv file"):
        TableSource(tmp_path / "table.json")
    with pytest.raises(SourceError, match=r"gone\.csv: cannot read"):
        TableSource(tmp_path / "gone.csv")


def test_a_parquet_file_corrupt_past_its_footer_fails_where_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "torn.parquet"
    rows = 20_000
    pq.write_table(
        pa.table({"id": [f"d{i}" for i in range(rows)], "text": ["some text"] * rows}),
        path,
        row_group_size=1_000,
    )
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 5_000] = b"\xff" * 5_000
    path.write_bytes(bytes(data))
    source = TableSource(path)
    with pytest.raises(SourceError, match=r"torn\.parquet: not a readable Parquet file"):
        for _ in source:
            pass
    assert 0 < source.bytes_read < source.total_bytes  # type: ignore[operator]


def test_without_pyarrow_a_parquet_file_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _parquet(tmp_path / "t.parquet", {"id": ["a"], "text": ["b"]})
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # `import` fails as if missing
    with pytest.raises(SourceError) as caught:
        list(TableSource(path))
    assert str(caught.value) == (
        f'{path}: reading Parquet needs pyarrow: pip install "qdrant-hybrid-connector[documents]"'
    )


def test_open_source_opens_tables_with_the_column_mapping(tmp_path: Path) -> None:
    csv_path = tmp_path / "Rows.CSV"
    csv_path.write_text("doc,body,lang\nx,hello,en\n", encoding="utf-8")
    source = open_source(
        str(csv_path), name="rows", id_field="doc", text_field="body", metadata_fields=("lang",)
    )
    assert isinstance(source, TableSource)
    assert source.name == "rows"
    assert [(r.chunk_id, r.text, r.metadata) for r in source] == [("x", "hello", {"lang": "en"})]
    parquet_path = _parquet(tmp_path / "rows.parquet", {"id": ["p"], "text": ["t"]})
    assert [r.chunk_id for r in open_source(str(parquet_path))] == ["p"]


def test_a_sync_reads_the_columns_the_settings_name(workdir: Path) -> None:
    path = workdir / "export.csv"
    path.write_text("doc,body,lang,skip\na,first row,en,x\nb,second row,de,y\n", encoding="utf-8")
    conf = load_settings(
        None,
        {
            "state_dir": str(workdir / "state"),
            "source": {
                "path": str(path),
                "id_field": "doc",
                "text_field": "body",
                "metadata_fields": ["lang"],
            },
        },
    )
    assert conf.source.metadata_fields == ("lang",)
    with build_syncer(
        conf, dense=[FakeDense()], client=EdgeClient(workdir / "qdrant"), sparse=False, record=False
    ) as job:
        run = job.run()
        points, _ = job.store.scroll(job.writer.collection)
    assert run.writes.upserted == 2
    payloads = sorted((p.payload or {} for p in points), key=lambda payload: payload["text"])
    assert [(p["chunk_id"], p["text"], p["metadata"]) for p in payloads] == [
        ("a", "first row", {"lang": "en"}),
        ("b", "second row", {"lang": "de"}),
    ]

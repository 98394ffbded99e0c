"""`connector search --queries`, fusion and feedback flags, on the edge engine end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from connector.errors import SourceError
from connector.queries import read_queries
from tests.cli import run

QUERIES = [
    {"_id": "q1", "text": "wing in a propeller slipstream lift distribution"},
    {"_id": 2, "text": "magneto-gasdynamic channel"},
    {"_id": "q3", "text": "heating of a slab made of several layers"},
]


def write_queries(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_batch_queries_on_the_edge_engine(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONNECTOR_QDRANT__ENGINE", "edge")
    monkeypatch.setenv("CONNECTOR_SPARSE__BM25__AVG_LEN", "auto")
    code, out, err = run(capsys, "sync", "--source", "corpus.jsonl", "--json")
    assert code == 0, err
    assert json.loads(out)["upserted"] == 40
    assert (workdir / ".connector" / "qdrant" / "edge" / "chunks__1").is_dir()
    assert (workdir / ".connector" / "qdrant" / "edge" / "aliases.json").is_file()

    queries = write_queries(workdir / "queries.jsonl", QUERIES)
    code, out, err = run(capsys, "search", "--queries", str(queries), "--json", "--limit", "5")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["query_id"] for line in lines] == ["q1", "2", "q3"]
    assert all(len(line["hits"]) == 5 for line in lines)
    assert set(lines[0]["hits"][0]) == {"chunk_id", "score", "source"}
    assert lines[0]["hits"][0]["chunk_id"] == "1"
    assert lines[1]["hits"][0]["chunk_id"] == "34"
    assert {"5", "6"} & {hit["chunk_id"] for hit in lines[2]["hits"][:2]}

    # TREC run lines without --json; flags pick the fusion and the feedback.
    code, out, _ = run(
        capsys, "search", "--queries", str(queries), "--limit", "2", "--fusion", "rrf",
        "--feedback", "2",
    )  # fmt: skip
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert [(r[0], r[1], r[3], r[5]) for r in rows[:2]] == [
        ("q1", "Q0", "1", "connector"),
        ("q1", "Q0", "2", "connector"),
    ]
    assert len(rows) == 6

    code, out, _ = run(capsys, "sync", "--source", "corpus.jsonl", "--json")
    report = json.loads(out)
    assert (report["encoded"], report["skipped_unchanged"]) == (0, 40)


def test_query_and_queries_file_are_exclusive(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    queries = write_queries(workdir / "queries.jsonl", QUERIES)
    for argv in (["search"], ["search", "wing", "--queries", str(queries)]):
        code, _, err = run(capsys, *argv)
        assert code == 1
        assert err == "connector: error: search: give either QUERY or --queries FILE\n"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"_id": "x", "text": ""}', 'empty "text"'),
        ('{"text": "no id"}', 'missing "_id" (or "id")'),
        ('{"_id": "x"}', 'missing "text"'),
        ('{"_id": "q1", "text": "again"}', "duplicate query id 'q1'"),
        ("[1, 2]", "expected a JSON object, got array"),
        ('{"_id": "x", "text": "cut', "invalid JSON"),
    ],
)
def test_bad_query_line_names_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "queries.jsonl"
    path.write_text(json.dumps(QUERIES[0]) + "\n\n" + line + "\n", encoding="utf-8")
    queries = read_queries(path)
    assert next(queries).query_id == "q1"
    with pytest.raises(SourceError, match=re.escape(f"{path}:3: {problem}")):
        next(queries)


def test_bad_queries_file_is_one_error_line(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "search", "--queries", "missing.jsonl")
    assert (code, out) == (1, "")
    assert err.startswith("connector: error: missing.jsonl: cannot read")
    assert err.count("\n") == 1

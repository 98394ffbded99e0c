"""The `connector` command end to end: real MiniLM, real BM25, embedded Qdrant."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from connector.store.edge import EdgeClient
from tests.cli import run


def stored_texts(workdir: Path) -> dict[str, str]:
    client = EdgeClient(workdir / ".connector" / "qdrant")
    try:
        points, _ = client.scroll("chunks", limit=1000, with_payload=["chunk_id", "text"])
        return {p.payload["chunk_id"]: p.payload["text"] for p in points}
    finally:
        client.close()


def test_sync_then_hybrid_search_finds_the_chunk(workdir: Path, capsys) -> None:
    code, out, err = run(capsys, "sync", "--source", "corpus.jsonl", "--json")
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["chunks_seen"] == 40
    assert report["encoded"] == report["upserted"] == 40
    assert report["skipped_unchanged"] == report["deleted"] == 0
    assert report["run_id"]
    assert err == ""  # no progress bar, no chatter in a pipe

    code, out, _ = run(
        capsys,
        "search",
        "wing in a propeller slipstream lift distribution",
        "--json",
        "--limit",
        "3",
    )
    assert code == 0
    hits = json.loads(out)
    assert hits[0]["chunk_id"] == "1"
    assert set(hits[0]) >= {"chunk_id", "score", "source"}
    assert hits[0]["source"] == str(workdir / "corpus.jsonl")

    for mode, query, expected in [
        ("dense", "heating of a slab made of several layers", {"5", "6"}),
        ("sparse", "magneto-gasdynamic channel", {"34"}),
    ]:
        code, out, _ = run(capsys, "search", query, "--mode", mode, "--json", "--limit", "2")
        assert code == 0
        assert {hit["chunk_id"] for hit in json.loads(out)} & expected

    code, out, _ = run(capsys, "sync", "--source", "corpus.jsonl", "--json")
    report = json.loads(out.strip().splitlines()[-1])
    assert (report["encoded"], report["skipped_unchanged"], report["upserted"]) == (0, 40, 0)


BAD_LINES = [
    (b'{"id": "x1", "text": "unterminated\n', r"corpus.jsonl:41: invalid JSON"),
    (b'{"id": "x2", "metadata": {}}\n', r'corpus.jsonl:41: missing "text"'),
    (
        b'{"_id": "7", "text": "a second chunk under id 7"}\n',
        r"corpus.jsonl:41: duplicate chunk id '7'",
    ),
    (b'{"id": "x3", "text": "caf\xe9 au lait"}\n', r"corpus.jsonl:41: not valid UTF-8"),
]


@pytest.mark.parametrize(("bad_line", "message"), BAD_LINES)
def test_bad_line_fails_naming_file_and_line_and_keeps_what_was_stored_when_strict(
    workdir: Path, capsys, bad_line: bytes, message: str
) -> None:
    assert run(capsys, "sync", "--source", "corpus.jsonl")[0] == 0
    before = stored_texts(workdir)
    with open(workdir / "corpus.jsonl", "ab") as handle:
        handle.write(bad_line)

    code, out, err = run(capsys, "sync", "--source", "corpus.jsonl", "--strict")
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("connector: error: ")
    assert __import__("re").search(message, err), err
    assert stored_texts(workdir) == before


@pytest.mark.parametrize("workers", ["1", pytest.param("2", marks=pytest.mark.slow)])
@pytest.mark.parametrize(("bad_line", "message"), BAD_LINES)
def test_bad_line_is_skipped_reported_and_counted_in_the_manifest(
    workdir: Path, capsys, bad_line: bytes, message: str, workers: str
) -> None:
    assert run(capsys, "sync", "--source", "corpus.jsonl", "--workers", workers)[0] == 0
    before = stored_texts(workdir)
    with open(workdir / "corpus.jsonl", "ab") as handle:
        handle.write(bad_line)

    code, out, err = run(capsys, "sync", "--source", "corpus.jsonl", "--json", "--workers", workers)

    assert code == 0
    report = json.loads(out)
    assert (report["status"], report["skipped"], report["deleted"]) == ("succeeded", 1, 0)
    lines = err.splitlines()
    assert __import__("re").search("connector: skipped " + message, lines[0]), err
    assert lines[1].startswith("connector: 1 records skipped (")
    assert stored_texts(workdir) == before
    manifest = json.loads(
        (workdir / ".connector" / "runs" / report["run_id"] / "processing_summary.json").read_text()
    )
    assert manifest["counts"]["skipped"] == 1
    assert manifest["skipped"]["count"] == 1
    assert manifest["skipped"]["records"][0]["location"].endswith("corpus.jsonl:41")


def test_unreachable_url_fails_with_the_url(workdir: Path, capsys, monkeypatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("CONNECTOR_SOURCE__RETRIES", "0")
    url = f"http://127.0.0.1:{port}/corpus.jsonl"
    code, _, err = run(capsys, "sync", "--source", url)
    assert code == 1
    assert url in err and "could not fetch" in err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_empty_source_deletes_nothing(workdir: Path, capsys, workers: str) -> None:
    docs = ["--source-name", "docs", "--workers", workers]
    assert run(capsys, "sync", "--source", "corpus.jsonl", *docs)[0] == 0
    (workdir / "empty.jsonl").write_text("")
    code, _, err = run(capsys, "sync", "--source", "empty.jsonl", *docs)
    assert code == 1 and "would delete 40 of its 40 stored points" in err
    assert len(stored_texts(workdir)) == 40


@pytest.mark.parametrize("workers", ["1", "2"])
def test_truncated_source_needs_allow_mass_delete(workdir: Path, capsys, workers: str) -> None:
    docs = ["--source-name", "docs", "--workers", workers]
    assert run(capsys, "sync", "--source", "corpus.jsonl", *docs)[0] == 0
    lines = (workdir / "corpus.jsonl").read_bytes().splitlines(keepends=True)
    (workdir / "half.jsonl").write_bytes(b"".join(lines[:20]))

    code, _, err = run(capsys, "sync", "--source", "half.jsonl", *docs)
    assert code == 1 and "would delete 20 of its 40 stored points (50%" in err
    assert len(stored_texts(workdir)) == 40

    code, out, _ = run(capsys, "sync", "--source", "half.jsonl", *docs, "--allow-mass-delete")
    assert code == 0 and "20 deleted" in out
    assert len(stored_texts(workdir)) == 20


def test_bad_config_value_fails_at_start(workdir: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CONNECTOR_QDRANT__UPSERT_BATCH_SIZE", "0")
    code, _, err = run(capsys, "sync", "--source", "corpus.jsonl")
    assert code == 1
    assert "qdrant.upsert_batch_size" in err


def test_missing_source_and_unknown_sparse_model(workdir: Path, capsys, monkeypatch) -> None:
    code, _, err = run(capsys, "sync", "--source", "nope.jsonl")
    assert code == 1 and "nope.jsonl: no such file or folder" in err
    monkeypatch.setenv("CONNECTOR_SPARSE__MODEL", "bm99")
    code, _, err = run(capsys, "sync", "--source", "corpus.jsonl")
    assert code == 1 and "unknown sparse model 'bm99'; known: qdrant-bm25" in err


def test_search_before_any_sync_says_so(workdir: Path, capsys) -> None:
    code, _, err = run(capsys, "search", "anything")
    assert code == 1 and "does not exist (run `connector sync` first)" in err


def test_server_url_goes_through_the_same_path_and_hides_the_key(
    workdir: Path, capsys, monkeypatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("CONNECTOR_QDRANT__URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("CONNECTOR_QDRANT__API_KEY", "key-7f3a9c-do-not-print")
    monkeypatch.setenv("CONNECTOR_QDRANT__RETRIES", "0")
    code, out, err = run(capsys, "sync", "--source", "corpus.jsonl")
    assert code == 1
    assert "no answer from Qdrant" in err or "Qdrant" in err
    assert "key-7f3a9c" not in out + err
    assert not (workdir / ".connector" / "qdrant").exists()  # nothing embedded was opened


def test_embedded_folder_held_by_another_client_is_a_clear_error(workdir: Path, capsys) -> None:
    holder = EdgeClient(workdir / ".connector" / "qdrant")
    try:
        code, _, err = run(capsys, "sync", "--source", "corpus.jsonl")
    finally:
        holder.close()
    assert code == 1
    assert "in use by another process" in err


def manifest(workdir: Path, run_id: str) -> dict:
    path = workdir / ".connector" / "runs" / run_id / "processing_summary.json"
    return json.loads(path.read_text())


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_sparse_switch_off_then_on_backfills_sparse_only(workdir: Path, capsys) -> None:
    from pydantic import BaseModel, ConfigDict

    class ReaderV40(BaseModel):  # what a tool written for schema 4.0 knows
        model_config = ConfigDict(extra="ignore")
        schema_version: str
        run: dict
        counts: dict[str, int]

    code, out, _ = run(capsys, "sparse", "off", "--json")
    assert code == 0 and json.loads(out) == {"sparse_enabled": False, "decided_by": "switch"}
    code, out, _ = run(capsys, "sync", "--source", "corpus.jsonl", "--json")
    off = last_json(out)
    assert off["vectors_encoded"] == {"all-minilm-l6-v2": 40}
    summary = manifest(workdir, off["run_id"])
    assert summary["schema_version"] == "4.0" and summary["sparse_run"] is None
    client = EdgeClient(workdir / ".connector" / "qdrant")
    # The schema has the sparse vector (migration 0002); with sparse off no point fills it.
    assert set(client.get_collection("chunks").config.params.sparse_vectors) == {"qdrant-bm25"}
    points, _ = client.scroll("chunks", limit=100, with_vectors=True)
    assert len(points) == 40 and all(set(p.vector) == {"all-minilm-l6-v2"} for p in points)
    client.close()

    assert run(capsys, "sparse", "on")[1].startswith("sparse is on for the next syncs (switch)")
    code, out, _ = run(capsys, "sync", "--source", "corpus.jsonl", "--json")
    on = last_json(out)
    assert on["vectors_encoded"] == {"qdrant-bm25": 40}  # no dense vector recomputed
    assert (on["upserted"], on["vectors_updated"]) == (0, 40)
    summary = manifest(workdir, on["run_id"])
    assert summary["schema_version"] == "4.1"
    sparse_run = summary["sparse_run"]
    assert sparse_run["sparse_model"] == "qdrant-bm25" and sparse_run["fallback_used"] is False
    assert sparse_run["coverage"] == {"total": 40, "available": 40, "coverage_ratio": 1.0}
    assert sparse_run["devices"] == {"qdrant-bm25": "cpu"}
    for run_id in (off["run_id"], on["run_id"]):
        old = ReaderV40.model_validate(manifest(workdir, run_id))
        assert old.counts["chunks_seen"] == 40 and old.run["status"] == "succeeded"

    code, out, _ = run(capsys, "search", "magneto-gasdynamic channel", "--mode", "sparse", "--json")
    assert code == 0 and json.loads(out)[0]["chunk_id"] == "34"

    code, out, _ = run(capsys, "sync", "--source", "corpus.jsonl", "--disable-sparse", "--json")
    assert manifest(workdir, last_json(out)["run_id"])["schema_version"] == "4.0"
    assert run(capsys, "sparse", "status")[1].startswith("sparse is on")


def test_manifests_hold_no_chunk_text(workdir: Path, capsys) -> None:
    code, out, _ = run(capsys, "sync", "--source", "corpus.jsonl", "--json")
    text = (workdir / "corpus.jsonl").read_text()
    summary = json.dumps(manifest(workdir, last_json(out)["run_id"]))
    assert "slipstream" in text and "slipstream" not in summary


def test_a_closed_pipe_on_stdout_ends_quietly(workdir: Path) -> None:
    import subprocess
    import sys

    script = "import sys; from connector.cli import main; sys.exit(main(['sparse', 'status']))"
    # `head -c0` closes the pipe at once, as `| head` does after its lines.
    done = subprocess.run(
        f'{sys.executable} -c "{script}" | head -c0',
        shell=True,
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=60,
    )
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_gpu_and_cpu_flags_beat_the_settings(workdir: Path, capsys, caplog, monkeypatch) -> None:
    monkeypatch.setenv("CONNECTOR_GPU__ENABLED", "true")
    code, out, err = run(capsys, "sync", "--source", "corpus.jsonl", "--cpu", "--json")
    assert code == 0 and err == ""
    assert json.loads(out.strip().splitlines()[-1])["encoded"] == 40
    assert "GPU" not in caplog.text  # no GPU asked for, none looked for

    monkeypatch.setenv("CONNECTOR_GPU__ENABLED", "false")
    argv = ["sync", "--source", "corpus.jsonl", "--collection", "other", "--gpu", "--json"]
    code, out, err = run(capsys, *argv)
    assert code == 0
    assert json.loads(out.strip().splitlines()[-1])["encoded"] == 40
    # This machine has no GPU: the operator is told once, and the run goes on on the CPU.
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "no GPU" in r.message]
    assert len(warnings) == 1 and "using the CPU" in warnings[0].message
    assert "connector: error" not in err

"""`connector runs`, `connector migrate`, and a sync killed mid-way, end to end (real MiniLM)."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.cli import main
from connector.runs.live import read_progress
from connector.store.edge import EdgeClient
from connector.store.migrator import SCHEMA_KEY
from tests.cli import run
from tests.conftest import FIXTURES


def sync_json(capsys, *extra: str) -> dict:
    code, out, err = run(capsys, "sync", "--source", "corpus.jsonl", "--json", *extra)
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_runs_lists_newest_first_and_shows_one_manifest(workdir: Path, capsys) -> None:
    first = sync_json(capsys, "--disable-sparse")
    second = sync_json(capsys)

    code, out, _ = run(capsys, "runs", "--json")
    assert code == 0
    runs = json.loads(out)
    assert [r["run"]["id"] for r in runs] == [second["run_id"], first["run_id"]]
    assert [r["schema_version"] for r in runs] == ["4.1", "4.0"]
    assert all(r["run"]["status"] == "succeeded" for r in runs)
    assert runs[0]["counts"]["vectors_updated"] == 40  # the sparse backfill

    code, out, _ = run(capsys, "runs", "--limit", "1")
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(second["run_id"]) and "succeeded" in lines[0]

    code, out, err = run(capsys, "runs", "show", first["run_id"])
    assert code == 0 and err == ""
    shown = json.loads(out)
    assert shown["run"]["id"] == first["run_id"] and shown["sparse_run"] is None
    on_disk = workdir / ".connector" / "runs" / first["run_id"] / "processing_summary.json"
    assert shown == json.loads(on_disk.read_text())

    code, _, err = run(capsys, "runs", "show", "not-a-run")
    assert code == 1 and "'not-a-run' is not a run id" in err
    code, _, err = run(capsys, "runs", "show", "00000000-0000-4000-8000-000000000000")
    assert code == 1 and "not found" in err


def test_runs_show_warns_when_sparse_ran_but_the_section_is_missing(workdir: Path, capsys) -> None:
    report = sync_json(capsys)
    client = EdgeClient(workdir / ".connector" / "qdrant")
    try:
        (record,) = client.retrieve("connector_runs", [report["run_id"]])
        payload = dict(record.payload)
        payload["sparse_run"] = None  # as an older writer might have left it
        client.overwrite_payload("connector_runs", payload, points=[report["run_id"]])
    finally:
        client.close()
    code, out, err = run(capsys, "runs", "show", report["run_id"])
    assert code == 0 and json.loads(out)["run"]["sparse_enabled"] is True
    assert err.startswith("connector: warning: run ") and "no sparse_run section" in err


def test_runs_reads_the_state_folder_while_the_embedded_qdrant_is_busy(
    workdir: Path, capsys
) -> None:
    report = sync_json(capsys)
    holder = EdgeClient(workdir / ".connector" / "qdrant")  # as a running sync would
    try:
        code, out, err = run(capsys, "runs", "--json")
        assert code == 0 and "embedded Qdrant is in use" in err
        assert [r["run"]["id"] for r in json.loads(out)] == [report["run_id"]]
        code, out, _ = run(capsys, "runs", "show", report["run_id"])
        assert code == 0 and json.loads(out)["run"]["id"] == report["run_id"]
    finally:
        holder.close()


def test_sync_refuses_a_collection_behind_until_migrate(workdir: Path, capsys) -> None:
    sync_json(capsys)
    code, out, _ = run(capsys, "migrate", "--status", "--json")
    status = json.loads(out)
    assert (status["version"], status["latest"]) == (2, 2)
    assert status["physical_collection"] == "chunks__1"

    # Roll the record back to version 1, as a collection made before 0002 would be.
    client = EdgeClient(workdir / ".connector" / "qdrant")
    record = client.get_collection("chunks").config.metadata[SCHEMA_KEY]
    del record["applied"]["0002_sparse_vector"]
    client.update_collection("chunks__1", metadata={SCHEMA_KEY: record})
    client.close()

    code, _, err = run(capsys, "sync", "--source", "corpus.jsonl")
    assert code == 1
    assert "schema version 1, this connector needs 2" in err
    assert "run `connector migrate` first" in err

    code, out, _ = run(capsys, "migrate", "--status")
    assert "schema version 1 of 2" in out and "pending" in out
    code, out, _ = run(capsys, "migrate")
    assert code == 0 and "applied 0002_sparse_vector" in out
    code, out, _ = run(capsys, "migrate")
    assert "nothing to do" in out
    assert sync_json(capsys)["skipped_unchanged"] == 40


class _Stalling(http.server.BaseHTTPRequestHandler):
    """Serves some JSONL lines, then hangs as a stalled upstream would."""

    lines: list[bytes] = []
    release = threading.Event()
    then_signal: int | None = None
    """Send this signal to this very process once the lines are out."""

    def do_GET(self) -> None:  # noqa: N802 (the handler's API)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        self.wfile.write(b"".join(self.lines))
        self.wfile.flush()
        if self.then_signal is not None:
            deadline = time.monotonic() + 60
            while (read_progress(Path(".connector")) or _NONE).chunks_done < 8:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            os.kill(os.getpid(), self.then_signal)
        self.release.wait(120)

    def log_message(self, *args) -> None:
        pass


class _NoProgress:
    chunks_done = 0


_NONE = _NoProgress()


@pytest.fixture
def stalling_url(request: pytest.FixtureRequest) -> Iterator[str]:
    lines = (FIXTURES / "corpus.jsonl").read_bytes().splitlines(keepends=True)[:8]
    release = threading.Event()
    attributes = {
        "lines": lines,
        "release": release,
        "then_signal": getattr(request, "param", None),
    }
    handler = type("Handler", (_Stalling,), attributes)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/corpus.jsonl"
    release.set()
    server.shutdown()
    server.server_close()


def test_a_sync_killed_mid_way_is_marked_interrupted_by_the_next(
    workdir: Path, capsys, stalling_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    child = subprocess.Popen(
        [sys.executable, "-m", "connector", "sync", "--source", stalling_url, "--batch-size", "4"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    state = workdir / ".connector"
    try:
        deadline = time.monotonic() + 120
        live = read_progress(state)
        while not (live is not None and live.chunks_done >= 8):
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the sync never got going"
            time.sleep(0.2)
            live = read_progress(state)
        # Another process (a dashboard) sees the run live, without opening the embedded Qdrant.
        assert live.is_live() and live.status == "running" and live.pid == child.pid
        assert live.total_bytes is None and live.batch_size == 4
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        if child.stderr:
            child.stderr.close()

    killed = read_progress(state)
    assert killed is not None and killed.status == "running" and not killed.is_live()

    after = sync_json(capsys)
    code, out, _ = run(capsys, "runs", "--json")
    runs = {r["run"]["id"]: r for r in json.loads(out)}
    assert runs[after["run_id"]]["run"]["status"] == "succeeded"
    dead = runs[killed.run_id]["run"]
    assert dead["status"] == "interrupted"
    assert f"({child.pid} on " in dead["reason"] and after["run_id"] in dead["reason"]
    on_disk = json.loads((state / "runs" / killed.run_id / "processing_summary.json").read_text())
    assert on_disk["run"]["status"] == "interrupted"
    assert runs[killed.run_id]["progress"]["chunks_done"] >= 4  # its last recorded progress


@pytest.mark.parametrize("stalling_url", [signal.SIGTERM], indirect=True)
def test_sigterm_ends_a_sync_recorded_interrupted(workdir: Path, capsys, stalling_url) -> None:
    before = signal.getsignal(signal.SIGTERM)
    code = main(["sync", "--source", stalling_url, "--batch-size", "4"])
    assert code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the sync's only
    assert "stopped by SIGTERM" in capsys.readouterr().err
    live = read_progress(workdir / ".connector")
    assert live is not None and live.status == "interrupted"
    code, out, _ = run(capsys, "runs", "show", live.run_id)
    record = json.loads(out)["run"]
    assert (record["status"], record["reason"]) == ("interrupted", "stopped by SIGTERM")

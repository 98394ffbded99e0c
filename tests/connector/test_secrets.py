"""The Qdrant API key never shows: not on stdout or stderr, not in logs, files or manifests, not
even when a server echoes the request headers back in its error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.paths import FIXTURES

API_KEY = "sk-test-RECOGNISABLE-4f1c9e"
CORPUS = FIXTURES / "corpus.jsonl"


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with an error whose body repeats the request's headers."""

    status = 500

    def _answer(self) -> None:
        body = json.dumps({"status": {"error": f"echo {dict(self.headers)}"}}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=[500, 401], ids=["server-error", "unauthorised"])
def echo_server(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("Echo", (_Echo,), {"status": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _connector(workdir: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    environ |= {
        "CONNECTOR_QDRANT__API_KEY": API_KEY,
        "CONNECTOR_LOG_LEVEL": "DEBUG",
        # Spans and metrics printed too, so that they are searched as well.
        "CONNECTOR_TELEMETRY__EXPORTER": "console",
    } | env
    return subprocess.run(
        [sys.executable, "-m", "connector", *argv],
        cwd=workdir,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _files_with(root: Path, needle: str) -> list[Path]:
    return [
        path for path in root.rglob("*") if path.is_file() and needle.encode() in path.read_bytes()
    ]


def test_api_key_echoed_by_the_server_is_masked_everywhere(
    tmp_path: Path, echo_server: str
) -> None:
    done = _connector(
        tmp_path,
        "sync",
        "--source",
        str(CORPUS),
        "--json",
        CONNECTOR_QDRANT__URL=echo_server,
        CONNECTOR_QDRANT__RETRIES="1",
    )

    assert done.returncode == 1
    assert "connector: error: " in done.stderr and "HTTP" in done.stderr
    assert "***" in done.stderr  # the echo was there, masked
    assert API_KEY not in done.stdout + done.stderr
    assert _files_with(tmp_path, API_KEY) == []


def test_api_key_is_absent_from_a_successful_run_and_its_outputs(tmp_path: Path) -> None:
    # Embedded Qdrant: the key is configured but has nowhere to go; nothing may echo it.
    sync = _connector(tmp_path, "sync", "--source", str(CORPUS), "--json")
    search = _connector(tmp_path, "search", "supersonic flow", "--json")

    assert sync.returncode == 0, sync.stderr
    assert search.returncode == 0, search.stderr
    outputs = sync.stdout + sync.stderr + search.stdout + search.stderr
    assert '"name": "sync"' in outputs and '"name": "upsert"' in outputs  # the spans
    assert API_KEY not in outputs
    assert _files_with(tmp_path, API_KEY) == []
    assert list((tmp_path / ".connector" / "runs").glob("*/processing_summary.json"))

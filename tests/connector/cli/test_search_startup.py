"""A `connector search` process imports what its query needs: no model library (torch,
sentence-transformers, transformers) for a BM25 query or a plug-in encoder's, and none of the
sync's pipeline, run records or sources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import run
from tests.paths import REPO

NOT_FOR_SEARCH = (
    "torch",
    "sentence_transformers",
    "transformers",
    "connector.pipeline",
    "connector.runs",
    "connector.sources",
)

# Runs each argv through the CLI in turn, in one fresh interpreter, and prints after each what
# it found and which of those packages are imported by then.
_SEARCHES = f"""
import contextlib, io, json, sys
from connector.cli import main

for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    loaded = sorted(
        m for m in sys.modules if any(m == p or m.startswith(p + ".") for p in {NOT_FOR_SEARCH!r})
    )
    hits = json.loads(out.getvalue()) if code == 0 else []
    print(json.dumps({{"code": code, "first": hits[0]["chunk_id"] if hits else None,
                      "loaded": loaded}}))
"""


def test_bm25_and_plugin_searches_import_no_model_library_nor_the_sync(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def config(path: Path, model: str) -> Path:
        path.write_text(f'[qdrant]\nengine = "edge"\n[dense]\nmodels = [{model}]\n', "utf-8")
        return path

    config(
        workdir / "connector.toml",
        '{ encoder = "connector.dense_plugins:RateEncoder", name = "vec" }',
    )
    # The default model under the same vector name: a BM25 query of it loads no model either.
    minilm = config(workdir / "minilm.toml", '{ model = "all-MiniLM-L6-v2", name = "vec" }')
    code, _, err = run(capsys, "sync", "--source", "corpus.jsonl")
    assert code == 0, err

    query = ["search", "wing in a propeller slipstream", "--json"]
    searches = [
        [*query, "--mode", "sparse"],
        query,
        [*query, "--mode", "sparse", "--config", str(minilm)],
    ]
    done = subprocess.run(
        [sys.executable, "-c", _SEARCHES, json.dumps(searches)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert done.returncode == 0, done.stderr
    reports = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["code"], r["loaded"]) for r in reports] == [(0, [])] * 3, done.stderr
    # Each found something: BM25 the chunk of the query's words, hybrid any (its vectors hash).
    assert [reports[0]["first"], reports[2]["first"]] == ["1", "1"]
    assert reports[1]["first"] is not None

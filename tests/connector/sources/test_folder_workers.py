"""A folder read and cut on worker processes: the same records, skips, counts and errors as in one
process, and no worker left running however the iteration ends."""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any, cast

import docx
import pytest
from fpdf import FPDF

from connector.chunking import TokenChunker
from connector.chunks import ChunkRecord
from connector.errors import InvalidRecord, SourceError
from connector.runs.manifest import ProcessInfo
from connector.settings import load_settings
from connector.sources import FolderSource
from connector.store.edge import EdgeClient
from connector.wiring import build_syncer
from tests.cli import run
from tests.fakes import FakeDense
from tests.processes import Reaper, process_tree, survivors

WORDS = "wing flutter panel shell buckling heat shock nozzle boundary layer".split()


def _sentences(seed: int, count: int) -> str:
    return " ".join(
        f"Sentence {seed}.{i} on the {WORDS[(seed + i) % 10]} and the {WORDS[i % 10]}."
        for i in range(count)
    )


def _pdf(path: Path, seed: int) -> None:
    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for page in range(2):
        pdf.add_page()
        pdf.multi_cell(0, 6, _sentences(seed + page, 12))
    pdf.output(str(path))


def _docx(path: Path, seed: int) -> None:
    document = docx.Document()
    document.add_heading(f"Manual {seed}", level=1)
    for n in range(3):
        document.add_paragraph(_sentences(seed + n, 5))
    document.save(str(path))


def _folder(root: Path) -> Path:
    """Many small documents of several formats, and files that are skipped."""
    docs = root / "docs"
    (docs / "nested").mkdir(parents=True)
    for n in range(10):
        sections = "\n\n".join(f"## Part {s}\n\n{_sentences(n + s, 4 + n)}" for s in range(3))
        (docs / f"note{n}.md").write_text(f"# Note {n}\n\n{sections}\n")
    for n in range(6):
        (docs / "nested" / f"plain{n}.txt").write_text(_sentences(n, 3 + 2 * n))
    for n in range(4):
        (docs / f"page{n}.html").write_text(
            f"<html><head><title>Page {n}</title><script>var x = {n};</script></head>"
            f"<body><nav>home</nav><main><h1>Page {n}</h1><p>{_sentences(n, 6)}</p>"
            f"<p>{_sentences(n + 1, 6)}</p></main></body></html>"
        )
    for n in range(2):
        _pdf(docs / f"report{n}.pdf", n)
        _docx(docs / f"manual{n}.docx", n)
    (docs / "report_broken.pdf").write_bytes(b"%PDF-1.7\nthis is not a pdf at all")
    (docs / "nested" / "zz_latin1.txt").write_bytes(b"caf\xe9 au lait")
    (docs / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    return docs


def _chunker() -> TokenChunker:
    chunker = TokenChunker.for_models({}, max_tokens=48, overlap_tokens=8)
    # A window smaller than the chunks: some of them count as truncated.
    chunker.windows = {"small": 32}
    return chunker


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _folder(tmp_path_factory.mktemp("folder"))


def _read(source: FolderSource) -> dict[str, Any]:
    """Everything an iteration of ``source`` gives the sync."""
    records = [(r.chunk_id, r.text, r.metadata, r.location) for r in source]
    return {
        "records": records,
        "skipped": source.skips.entries,
        "by_kind": dict(source.skips.by_kind),
        "kept_documents": set(source.skips.protected_documents),
        "truncated": source.truncated,
        "bytes_read": source.bytes_read,
    }


def test_two_workers_read_the_folder_as_one_process(docs: Path) -> None:
    one = _read(FolderSource(docs, chunker=_chunker()))
    two = _read(FolderSource(docs, chunker=_chunker(), workers=2))

    assert two == one
    documents = {metadata["doc_id"] for _, _, metadata, _ in one["records"]}
    assert len(documents) == 24  # every readable file, in each format
    assert {"report1.pdf", "manual0.docx", "page3.html", "nested/plain5.txt"} <= documents
    assert one["by_kind"] == {"broken_file": 1, "not_utf8": 1, "unsupported_format": 1}
    assert one["kept_documents"] == {"report_broken.pdf", "nested/zz_latin1.txt", "picture.png"}
    assert one["truncated"] > 0
    assert one["bytes_read"] == sum(f.stat().st_size for f in docs.rglob("*") if f.is_file())


def test_a_strict_read_fails_on_the_same_file_after_the_same_records(docs: Path) -> None:
    failures = []
    for workers in (1, 2):
        read: list[str | None] = []
        with pytest.raises(InvalidRecord) as info:
            for record in FolderSource(docs, chunker=_chunker(), strict=True, workers=workers):
                read.append(record.chunk_id)
        failures.append((read, type(info.value), str(info.value), info.value.kind))
    assert failures[1] == failures[0]
    read, _, message, kind = failures[0]
    # Past the files in flight at the start: nested/plain*.txt and the manuals were read first.
    assert kind == "not_utf8" and "zz_latin1.txt" in message
    assert len({chunk_id.split("#")[0] for chunk_id in read if chunk_id}) == 8


def test_a_file_gone_since_the_folder_was_listed_fails_the_read_alike(tmp_path: Path) -> None:
    docs = _folder(tmp_path)
    failures = []
    for workers in (1, 2):
        source = FolderSource(docs, chunker=_chunker(), workers=workers)
        gone = docs / "nested" / "plain2.txt"
        data = gone.read_bytes()
        gone.unlink()
        with pytest.raises(SourceError) as info:
            list(source)
        gone.write_bytes(data)
        failures.append((type(info.value), str(info.value)))
    assert failures[1] == failures[0]
    assert failures[0][0] is SourceError and "plain2.txt" in failures[0][1]


Records = Generator[ChunkRecord, None, None]


def _end_by_closing(records: Records) -> None:
    records.close()


def _end_by_ctrl_c(records: Records) -> None:
    with pytest.raises(KeyboardInterrupt):
        records.throw(KeyboardInterrupt)


def _end_by_a_strict_failure(records: Records) -> None:
    with pytest.raises(InvalidRecord):
        list(records)


@pytest.mark.parametrize("end", [_end_by_closing, _end_by_ctrl_c, _end_by_a_strict_failure])
def test_no_worker_outlives_an_iteration_ended_early(docs: Path, reaper: Reaper, end: Any) -> None:
    def below() -> dict[int, ProcessInfo]:
        return {p.pid: p for p in process_tree(os.getpid()) if p.pid != os.getpid()}

    # The fork server (and its resource tracker) start with the first pool and serve the
    # processes of later ones: they are not the pool's.
    list(FolderSource(docs, chunker=_chunker(), workers=2))
    before = below()
    records = cast(Records, iter(FolderSource(docs, chunker=_chunker(), strict=True, workers=2)))
    next(records)
    started = [info for pid, info in below().items() if pid not in before]
    reaper.seen.extend(started)  # killed when the test ends, should it fail
    assert len(started) == 2  # the pool

    end(records)

    assert survivors(started, within_s=10) == []


def _stored(state: Path) -> dict[str, Any]:
    """The stored points by id: payload (without the run's id and clock) and vector names."""
    client = EdgeClient(state / "qdrant")
    try:
        points, _ = client.scroll("chunks", limit=10_000, with_payload=True, with_vectors=True)
    finally:
        client.close()
    assert points
    return {
        str(p.id): (
            {k: v for k, v in (p.payload or {}).items() if k not in {"run_id", "synced_at"}},
            sorted(p.vector or {}),
        )
        for p in points
    }


def test_a_build_syncer_sync_with_two_workers_stores_the_same_points(tmp_path: Path) -> None:
    docs = _folder(tmp_path)
    stored = {}
    for workers in (1, 2):
        state = tmp_path / f"state{workers}"
        settings = load_settings(
            None,
            {
                "state_dir": str(state),
                "source": {"path": str(docs), "name": "docs"},
                "sync": {"workers": workers, "batch_size": 16},
            },
        )
        client = EdgeClient(state / "qdrant")
        with build_syncer(settings, dense=[FakeDense()], client=client) as job:
            assert isinstance(job.source, FolderSource) and job.source.workers == workers
            record = job.run()
        assert record.workers == workers
        assert record.skips.count == 3
        stored[workers] = _stored(state)
    assert stored[2] == stored[1]


@pytest.mark.slow  # two syncs through the command, with the real model
def test_a_sync_with_two_workers_stores_the_same_points(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _folder(workdir)
    stored, reports = {}, {}
    for workers in (1, 2):
        state = workdir / f"state{workers}"
        monkeypatch.setenv("CONNECTOR_STATE_DIR", str(state))
        code, out, err = run(
            capsys,
            "sync",
            "--source",
            str(docs),
            "--source-name",
            "docs",
            "--json",
            "--workers",
            str(workers),
        )
        assert code == 0, err
        reports[workers] = json.loads(out.strip().splitlines()[-1])
        stored[workers] = _stored(state)
    assert stored[2] == stored[1]
    assert reports[2]["skipped_by_kind"] == reports[1]["skipped_by_kind"]
    assert reports[2]["truncated"] == reports[1]["truncated"]

"""Behaviour of the sources, through the public interface of ``connector.sources``."""

from __future__ import annotations

import base64
import functools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.chunking import TokenChunker, truncated
from connector.errors import InvalidRecord, SourceError, SourceUnavailable
from connector.sources import (
    FolderSource,
    HttpJsonlSource,
    JsonlFileSource,
    Skipped,
    Source,
    open_source,
)

URL = "https://example.com/corpus.jsonl"


def _jsonl(*objs: Any) -> bytes:
    return b"".join(json.dumps(obj).encode() + b"\n" for obj in objs)


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _error(source: Source) -> SourceError:
    with pytest.raises(SourceError) as info:
        list(source)
    return info.value


def _only_skip(source: Source) -> Skipped:
    """Read ``source`` (not strict): the one skipped record, after checking the others came."""
    records = list(source)
    assert [r.chunk_id for r in records] == ["first"]
    assert source.skips.count == 1 and len(source.skips.entries) == 1
    return source.skips.entries[0]


# --- JSONL files ---------------------------------------------------------------------------


def test_jsonl_file_reads_both_shapes_and_skips_blank_lines(tmp_path: Path) -> None:
    data = (
        _jsonl({"id": "a", "text": "alpha", "metadata": {"lang": "en"}})
        + b"\n   \n"
        + _jsonl({"_id": 7, "title": "Seven", "text": "seven text"})
    )
    path = _write(tmp_path / "c.jsonl", data)

    records = list(JsonlFileSource(path))

    assert [(r.chunk_id, r.text, r.metadata) for r in records] == [
        ("a", "alpha", {"lang": "en"}),
        ("7", "Seven\nseven text", {"title": "Seven"}),
    ]
    assert [r.location for r in records] == [f"{path}:1", f"{path}:4"]


def test_jsonl_extra_keys_go_into_metadata_without_overwriting(tmp_path: Path) -> None:
    line = {
        "id": "x",
        "title": "T",
        "text": "body",
        "metadata": {"title": "kept", "source": "kept"},
        "source": "dropped",
        "year": 2020,
    }
    path = _write(tmp_path / "c.jsonl", _jsonl(line))

    (record,) = JsonlFileSource(path)

    assert record.text == "T\nbody"
    assert record.metadata == {"title": "kept", "source": "kept", "year": 2020}


def test_jsonl_progress_counts_bytes_while_streaming(tmp_path: Path) -> None:
    data = _jsonl(*({"id": i, "text": f"text {i}"} for i in range(100)))
    path = _write(tmp_path / "c.jsonl", data)
    source = JsonlFileSource(path)
    assert source.total_bytes == len(data)

    records = iter(source)
    next(records)
    assert 0 < source.bytes_read < len(data)
    assert len(list(records)) == 99
    assert source.bytes_read == len(data)


def test_jsonl_malformed_json_names_path_and_line(tmp_path: Path) -> None:
    data = _jsonl({"id": 1, "text": "ok"}) + b"\n" + b'{"id": 2, "text": \n'
    path = _write(tmp_path / "c.jsonl", data)

    error = _error(JsonlFileSource(path, strict=True))

    assert error.location == f"{path}:3"
    assert error.problem.startswith("invalid JSON: ")
    assert str(error).startswith(f"{path}:3: invalid JSON")
    assert not isinstance(error, SourceUnavailable)


@pytest.mark.parametrize(
    ("line", "kind", "chunk_id", "problem"),
    [
        ({"id": "a"}, "missing_text", "a", 'missing "text"'),
        ({"text": "t"}, "missing_id", None, 'missing "id" (or "_id")'),
        ({"id": "a", "text": "  \n"}, "empty_text", "a", 'empty "text"'),
        ({"id": "", "text": "t"}, "bad_id", None, 'empty "id"'),
        ({"id": "a", "text": 5}, "bad_text", "a", '"text" must be a string, got number'),
        (
            {"id": True, "text": "t"},
            "bad_id",
            None,
            '"id" must be a string or an integer, got boolean',
        ),
        (
            {"_id": 1.5, "text": "t"},
            "bad_id",
            None,
            '"_id" must be a string or an integer, got number',
        ),
        (
            {"id": 7, "text": "t", "metadata": [1]},
            "bad_metadata",
            "7",
            '"metadata" must be a JSON object, got array',
        ),
        (
            {"id": "a", "text": "t", "title": 3},
            "bad_title",
            "a",
            '"title" must be a string, got number',
        ),
        ([1, 2], "not_an_object", None, "expected a JSON object, got array"),
        ("just a string", "not_an_object", None, "expected a JSON object, got string"),
    ],
)
def test_jsonl_bad_records_are_skipped_and_reported_or_fatal_when_strict(
    tmp_path: Path, line: Any, kind: str, chunk_id: str | None, problem: str
) -> None:
    path = _write(tmp_path / "c.jsonl", _jsonl({"id": "first", "text": "fine"}, line))

    skipped = _only_skip(JsonlFileSource(path))
    error = _error(JsonlFileSource(path, strict=True))

    assert skipped == Skipped(f"{path}:2", kind, problem, chunk_id)
    assert isinstance(error, InvalidRecord)
    assert (error.location, error.problem, error.kind) == (f"{path}:2", problem, kind)


def test_jsonl_non_utf8_line_names_line_byte_and_column(tmp_path: Path) -> None:
    data = _jsonl({"id": "first", "text": "ok"}) + b'{"id": 2, "text": "caf\xe9"}\n'
    path = _write(tmp_path / "c.jsonl", data)

    skipped = _only_skip(JsonlFileSource(path))

    assert skipped.location == f"{path}:2"
    assert skipped.kind == "not_utf8"
    assert skipped.reason == "not valid UTF-8 (byte 0xE9 at column 23)"


def test_jsonl_skip_counts_reset_on_each_read_and_blank_lines_are_counted(tmp_path: Path) -> None:
    data = _jsonl({"id": "first", "text": "ok"}) + b"\n  \nnot json\n" + _jsonl({"text": "x"})
    source = JsonlFileSource(_write(tmp_path / "c.jsonl", data))

    for _ in range(2):
        assert [r.chunk_id for r in source] == ["first"]
        assert source.skips.count == 2 and source.skips.blank_lines == 2
        assert dict(source.skips.by_kind) == {"invalid_json": 1, "missing_id": 1}
        assert source.skips.unidentified == 2


def test_jsonl_raw_control_characters_are_kept_not_rejected(tmp_path: Path) -> None:
    line = b'{"id": "first", "text": "tab\there\x01bell\x00nul"}\n'
    source = JsonlFileSource(_write(tmp_path / "c.jsonl", line))

    (record,) = list(source)

    assert record.text == "tab\there\x01bell\x00nul"
    assert source.skips.count == 0


def test_jsonl_line_over_the_limit_is_skipped_without_reading_it_whole(tmp_path: Path) -> None:
    huge = json.dumps({"id": "huge", "text": "word " * 5000}).encode() + b"\n"
    data = _jsonl({"id": "first", "text": "ok"}) + huge + _jsonl({"id": "last", "text": "ok"})
    path = _write(tmp_path / "c.jsonl", data)
    source = JsonlFileSource(path, max_line_bytes=1000)

    assert [r.chunk_id for r in source] == ["first", "last"]
    (skipped,) = source.skips.entries
    assert skipped.location == f"{path}:2" and skipped.kind == "line_too_long"
    assert skipped.reason == (
        f"line is {len(huge) - 1:,} bytes, over the limit of 1,000 (source.max_line_bytes)"
    )
    assert source.bytes_read == len(data)
    # A line of exactly the limit is read.
    exact = b'{"id": "e", "text": "' + b"x" * (1000 - 23) + b'"}'
    assert len(exact) == 1000
    assert [
        r.chunk_id
        for r in JsonlFileSource(_write(tmp_path / "e.jsonl", exact + b"\n"), max_line_bytes=1000)
    ] == ["e"]


# --- HTTP ----------------------------------------------------------------------------------


class _Recorder:
    """A MockTransport handler answering from a list, one answer per request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class _Body(httpx.SyncByteStream):
    """A body delivered in the given pieces, optionally breaking off with an error."""

    def __init__(self, pieces: list[bytes], error: Exception | None = None) -> None:
        self.pieces = pieces
        self.error = error

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces
        if self.error is not None:
            raise self.error


def _http(
    handler: Callable[[httpx.Request], httpx.Response], url: str = URL, retries: int = 3
) -> tuple[HttpJsonlSource, list[float]]:
    sleeps: list[float] = []
    source = HttpJsonlSource(
        url, retries=retries, transport=httpx.MockTransport(handler), sleep=sleeps.append
    )
    return source, sleeps


def test_http_streams_records_split_across_network_reads() -> None:
    data = _jsonl({"id": 1, "text": "one"}, {"_id": "b", "title": "B", "text": "two"})
    data += b'{"id": 3, "text": "no newline at end"}'
    pieces = [data[i : i + 5] for i in range(0, len(data), 5)]
    headers = {"Content-Length": str(len(data))}
    source, sleeps = _http(_Recorder(httpx.Response(200, headers=headers, stream=_Body(pieces))))

    records = list(source)

    assert [(r.chunk_id, r.text) for r in records] == [
        ("1", "one"),
        ("b", "B\ntwo"),
        ("3", "no newline at end"),
    ]
    assert [r.location for r in records] == [f"{URL}:1", f"{URL}:2", f"{URL}:3"]
    assert source.total_bytes == source.bytes_read == len(data)
    assert sleeps == []


def test_http_retries_server_error_then_succeeds() -> None:
    handler = _Recorder(
        httpx.Response(503), httpx.Response(200, content=_jsonl({"id": 1, "text": "t"}))
    )
    source, sleeps = _http(handler)

    assert [r.chunk_id for r in source] == ["1"]
    assert len(handler.requests) == 2
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 8


def test_http_gives_up_after_retries_with_backoff() -> None:
    handler = _Recorder(httpx.Response(503))
    source, sleeps = _http(handler, retries=6)

    with pytest.raises(SourceUnavailable) as info:
        list(source)

    assert (info.value.location, info.value.problem) == (URL, "could not fetch: HTTP 503")
    assert len(handler.requests) == 7
    assert len(sleeps) == 6
    assert all(0 < s <= 8 for s in sleeps)
    assert sleeps[0] <= 0.5 < sleeps[-1]  # grows exponentially, capped


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "connection refused"),
        (httpx.ReadTimeout("read timed out"), "timed out after 30s"),
        (httpx.Response(429), "HTTP 429"),
    ],
)
def test_http_transient_failures_become_source_unavailable(
    exc: httpx.Response | Exception, reason: str
) -> None:
    handler = _Recorder(exc)
    source, sleeps = _http(handler, retries=2)

    with pytest.raises(SourceUnavailable) as info:
        list(source)

    assert info.value.problem == f"could not fetch: {reason}"
    assert len(handler.requests) == 3 and len(sleeps) == 2


def test_http_client_error_is_not_retried() -> None:
    handler = _Recorder(httpx.Response(404))
    source, sleeps = _http(handler)

    error = _error(source)

    assert not isinstance(error, SourceUnavailable)
    assert (error.location, error.problem) == (URL, "HTTP 404 Not Found")
    assert len(handler.requests) == 1 and sleeps == []


def test_http_failure_mid_body_is_reported_not_retried() -> None:
    body = _Body(
        [_jsonl({"id": 1, "text": "a"}, {"id": 2, "text": "b"}) + b'{"id": 3, "te'],
        httpx.ReadError("connection reset"),
    )
    handler = _Recorder(httpx.Response(200, stream=body))
    source, sleeps = _http(handler)
    seen: list[str] = []

    with pytest.raises(SourceUnavailable) as info:
        seen.extend(r.chunk_id or "" for r in source)

    assert seen == ["1", "2"]
    assert info.value.problem == "connection lost after line 2: connection reset"
    assert len(handler.requests) == 1 and sleeps == []


def test_http_bad_line_names_url_and_line() -> None:
    data = _jsonl({"id": 1, "text": "a"}) + b"\xff\n"
    source, _ = _http(_Recorder(httpx.Response(200, content=data)))

    assert [r.chunk_id for r in source] == ["1"]
    assert source.skips.entries == [
        Skipped(f"{URL}:2", "not_utf8", "not valid UTF-8 (byte 0xFF at column 1)")
    ]


@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_http_long_line_is_skipped_whatever_the_network_reads(piece: int) -> None:
    data = (
        _jsonl({"id": 1, "text": "a"})
        + json.dumps({"id": 2, "text": "w " * 800}).encode()
        + b"\n"
        + _jsonl({"id": 3, "text": "c"}, {"id": 4, "text": "d"})[:-1]  # no final newline
    )
    pieces = [data[i : i + piece] for i in range(0, len(data), piece)]
    handler = _Recorder(httpx.Response(200, stream=_Body(pieces)))
    source = HttpJsonlSource(URL, transport=httpx.MockTransport(handler), max_line_bytes=1000)

    assert [r.chunk_id for r in source] == ["1", "3", "4"]
    (skipped,) = source.skips.entries
    assert (skipped.location, skipped.kind) == (f"{URL}:2", "line_too_long")


def test_http_credentials_never_leave_the_request() -> None:
    url = "https://alice:s3cr%40t@example.com/c.jsonl?token=abc123"
    leaks = ("alice", "s3cr", "token", "abc123")
    data = _jsonl({"id": 1, "text": "a"}) + b"not json\n"
    ok = _Recorder(httpx.Response(200, content=data))
    source, _ = _http(ok, url=url)
    source.skips.strict = True

    assert source.name == "https://example.com/c.jsonl"
    bad_line = _error(source)
    # The credentials are still used to authenticate.
    sent = ok.requests[0].headers["Authorization"]
    assert base64.b64decode(sent.split()[1]) == b"alice:s3cr@t"

    refused = _Recorder(httpx.ConnectError(f"cannot reach {url} as alice:s3cr@t"))
    source, _ = _http(refused, url=url, retries=0)
    unreachable = _error(source)

    messages = [str(bad_line), str(unreachable), source.name]
    assert bad_line.location == "https://example.com/c.jsonl:2"
    assert not [m for m in messages for leak in leaks if leak in m]


def test_open_source_strips_credentials_from_url_name() -> None:
    source = open_source("http://u:p@host:8080/x.jsonl?key=1#frag")
    assert isinstance(source, HttpJsonlSource)
    assert source.name == "http://host:8080/x.jsonl"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    data = _jsonl(*({"id": i, "text": f"document number {i} " * 5} for i in range(2000)))
    _write(tmp_path / "corpus.jsonl", data)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/corpus.jsonl", data
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_streams_from_a_real_server(served: tuple[str, bytes]) -> None:
    url, data = served
    source = open_source(url, timeout_s=5)

    records = iter(source)
    first = next(records)
    assert first.chunk_id == "0" and first.location == f"{url}:1"
    assert source.total_bytes == len(data)
    count = 1 + sum(1 for _ in records)

    assert count == 2000
    assert source.bytes_read == len(data)


def test_http_unreachable_server_fails_quickly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps: list[float] = []
    source = HttpJsonlSource(f"http://127.0.0.1:{port}/x.jsonl", retries=1, sleep=sleeps.append)

    started = time.monotonic()
    with pytest.raises(SourceUnavailable) as info:
        list(source)

    assert time.monotonic() - started < 3
    assert info.value.problem.startswith("could not fetch: ")
    assert len(sleeps) == 1


# --- folders and chunking ------------------------------------------------------------------


def _document(paragraphs: int, sentences: int, words: int) -> str:
    n = iter(range(10**6))
    return "\n\n".join(
        " ".join(" ".join(f"w{next(n)}" for _ in range(words)) + "." for _ in range(sentences))
        for _ in range(paragraphs)
    )


def _chunker(max_tokens: int = 64, overlap_tokens: int = 16) -> TokenChunker:
    return TokenChunker.for_models({}, max_tokens=max_tokens, overlap_tokens=overlap_tokens)


def _make_folder(root: Path) -> None:
    _write(root / "b.txt", _document(paragraphs=4, sentences=5, words=8))
    _write(root / "a" / "z.md", "# The Title\n\nSome text.\n")
    _write(root / "a" / "Upper.TXT", "upper case suffix")
    _write(root / "c.md", "no heading here\n# not first")
    _write(root / "empty.txt", "  \n\n")
    _write(root / "skip.rst", "not read")
    _write(root / ".hidden.txt", "hidden")
    _write(root / ".git" / "notes.txt", "hidden dir")


def test_folder_walks_in_stable_order_with_stable_ids(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    _make_folder(root)

    first = list(FolderSource(root, chunker=_chunker()))
    second = list(FolderSource(root, chunker=_chunker()))

    assert [(r.chunk_id, r.text) for r in first] == [(r.chunk_id, r.text) for r in second]
    paths = list(dict.fromkeys(r.metadata["path"] for r in first))
    assert paths == ["a/Upper.TXT", "a/z.md", "b.txt", "c.md"]
    b_chunks = [r for r in first if r.metadata["path"] == "b.txt"]
    assert len(b_chunks) > 2
    assert [r.chunk_id for r in b_chunks] == [f"b.txt#{i}" for i in range(len(b_chunks))]
    assert {r.metadata["chunk_count"] for r in b_chunks} == {len(b_chunks)}
    assert {r.metadata["doc_id"] for r in b_chunks} == {"b.txt"}
    assert b_chunks[1].location == f"{root / 'b.txt'}#1"
    text = (root / "b.txt").read_text()
    for record in b_chunks:  # offsets into the document's text
        assert text[record.metadata["start"] : record.metadata["end"]] == record.text
    # Chunks overlap (by whole units: where none fits in the overlap, they only touch).
    pairs = list(zip(b_chunks, b_chunks[1:], strict=False))
    assert all(prev.metadata["start"] < nxt.metadata["start"] for prev, nxt in pairs)
    assert any(prev.metadata["end"] > nxt.metadata["start"] for prev, nxt in pairs)


def test_folder_chunks_fit_the_window_and_end_on_sentences(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    # Sentences that start with a capital (after a full stop, a lower-case word goes on the same
    # sentence in Unicode's rules).
    sentences = [f"Sentence {i} has " + " ".join(f"w{i}x{j}" for j in range(9)) for i in range(90)]
    text = "\n\n".join(". ".join(sentences[p : p + 30]) + "." for p in (0, 30, 60))
    _write(root / "long.txt", text)
    chunker = _chunker(max_tokens=80, overlap_tokens=0)
    records = list(FolderSource(root, chunker=chunker))
    assert len(records) > 5
    assert all(chunker.count_tokens(r.text) <= 80 for r in records)
    assert all(r.text.endswith(".") for r in records)  # structure first: never mid-sentence


def test_folder_metadata_and_md_headings(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    _make_folder(root)

    source = FolderSource(root, chunker=_chunker())
    records = {r.chunk_id: r for r in source}

    assert records["a/z.md#0"].metadata == {
        "path": "a/z.md",
        "doc_id": "a/z.md",
        "chunk_index": 0,
        "chunk_count": 1,
        "start": 0,
        "end": len("# The Title\n\nSome text."),
        "headings": ["The Title"],
        "title": "The Title",
    }
    assert records["a/z.md#0"].text == "# The Title\n\nSome text."
    assert "headings" not in records["b.txt#0"].metadata
    assert not any(k.startswith("empty.txt") for k in records)
    # Nothing is left out in silence: the empty file and the unknown format are reported.
    assert sorted((e.location, e.kind) for e in source.skips.entries) == [
        (str(root / "empty.txt"), "no_text"),
        (str(root / "skip.rst"), "unsupported_format"),
    ]


def test_folder_progress_and_bad_utf8(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    _write(root / "a.txt", "fine")
    _write(root / "b.txt", b"ok\n\x80bad")
    source = FolderSource(root)
    assert source.total_bytes == 4 + 7

    records = iter(source)
    assert next(records).text == "fine"
    assert source.bytes_read == 4
    assert list(records) == []
    assert source.bytes_read == 11
    ((location, kind),) = [(e.location, e.kind) for e in source.skips.entries]
    assert (location, kind) == (str(root / "b.txt"), "not_utf8")

    with pytest.raises(InvalidRecord, match="b.txt"):
        list(FolderSource(root, strict=True))


def test_long_records_become_chunks_of_the_window_and_short_ones_pass_as_they_are(
    tmp_path: Path,
) -> None:
    long_text = " ".join(f"Sentence {i} of a long record goes here." for i in range(400))
    file = _write(
        tmp_path / "c.jsonl",
        _jsonl({"id": "short", "text": "a short record"}, {"id": "long", "text": long_text}),
    )
    chunker = _chunker(max_tokens=64, overlap_tokens=8)
    source = open_source(str(file), chunker=chunker)
    records = list(source)
    assert records[0].chunk_id == "short" and records[0].metadata == {}
    parts = records[1:]
    assert len(parts) > 10
    assert [r.chunk_id for r in parts] == [f"long#{i}" for i in range(len(parts))]
    assert all(chunker.count_tokens(r.text) <= 64 for r in parts)
    assert all(long_text[r.metadata["start"] : r.metadata["end"]] == r.text for r in parts)
    assert {r.metadata["doc_id"] for r in parts} == {"long"}
    assert source.name == str(file.resolve()) and source.bytes_read == file.stat().st_size

    # Records that are chunks already pass whole; the long one is counted as truncated.
    kept = open_source(
        str(file), chunker=TokenChunker.for_models({"m": "all-MiniLM-L6-v2"}), split_records=False
    )
    assert [r.chunk_id for r in kept] == ["short", "long"]
    assert kept.truncated == 1  # type: ignore[attr-defined]


# --- open_source ---------------------------------------------------------------------------


def test_open_source_dispatches_and_names(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write(folder / "a.txt", "hello")
    file = _write(tmp_path / "c.jsonl", _jsonl({"id": 1, "text": "t"}))

    by_folder = open_source(str(folder))
    by_file = open_source(str(file))
    by_url = open_source(
        "https://example.com/x.jsonl", transport=httpx.MockTransport(_Recorder(httpx.Response(200)))
    )
    named = open_source(str(file), name="corpus")

    assert isinstance(by_folder, FolderSource) and by_folder.name == str(folder.resolve())
    assert isinstance(by_file, JsonlFileSource) and by_file.name == str(file.resolve())
    assert isinstance(by_url, HttpJsonlSource) and list(by_url) == []
    assert named.name == "corpus"
    assert all(isinstance(s, Source) for s in (by_folder, by_file, by_url))


def test_open_source_missing_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(SourceError) as info:
        open_source(missing)
    assert (info.value.location, info.value.problem) == (missing, "no such file or folder")


# --- documents over HTTP ----------------------------------------------------------------------


def _pdf_bytes(pages: list[str]) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 7, text)
    return bytes(pdf.output())


def test_a_url_naming_a_document_is_read_whole_and_cut_into_chunks() -> None:
    page = (
        b"<html><head><title>T</title><script>var hidden = 1;</script></head>"
        b"<body><nav>menu</nav><main><h1>Wings</h1><p>Lift grows with speed.</p></main></body>"
        b"</html>"
    )
    answer = httpx.Response(200, content=page, headers={"Content-Type": "text/html"})
    source = open_source(
        "https://example.com/docs/page.html?token=s3cret",
        transport=httpx.MockTransport(_Recorder(answer)),
        chunker=_chunker(),
    )
    (record,) = list(source)
    assert record.chunk_id == "page.html#0"
    assert record.text == "Wings\n\nLift grows with speed."
    assert record.metadata["doc_id"] == "page.html"
    assert record.metadata["headings"] == ["Wings"]
    assert record.metadata["url"] == "https://example.com/docs/page.html"  # no query, no secret
    assert source.bytes_read == len(page)


def test_a_documents_chunks_longer_than_a_window_are_counted_once() -> None:
    page = f"<html><body><main><p>{_document(paragraphs=3, sentences=6, words=9)}</p></main>"
    answer = httpx.Response(200, content=page.encode(), headers={"Content-Type": "text/html"})
    chunker = _chunker(max_tokens=48, overlap_tokens=8)
    chunker.windows = {"small": 32}  # smaller than most chunks: they count as truncated
    source = open_source(
        "https://example.com/long.html",
        transport=httpx.MockTransport(_Recorder(answer)),
        chunker=chunker,
    )
    records = list(source)
    counts = chunker.count_tokens_batch([r.text for r in records])
    assert len(records) > 2
    over = sum(1 for n in counts if truncated(n, chunker.windows))
    assert source.truncated == over > 0  # type: ignore[attr-defined]


def test_a_document_is_known_by_its_content_type_and_keeps_its_pages() -> None:
    data = _pdf_bytes(["First page.", "Second page text."])
    answer = httpx.Response(200, content=data, headers={"Content-Type": "application/pdf"})
    source = open_source(
        "https://example.com/report", transport=httpx.MockTransport(_Recorder(answer))
    )
    records = list(source)
    assert [(r.chunk_id, r.metadata["page"]) for r in records] == [
        ("report#0", 1),
        ("report#1", 2),
    ]
    # A .jsonl path stays JSONL whatever the server calls it.
    jsonl = httpx.Response(
        200, content=_jsonl({"id": 1, "text": "t"}), headers={"Content-Type": "text/html"}
    )
    assert [r.text for r in open_source(URL, transport=httpx.MockTransport(_Recorder(jsonl)))] == [
        "t"
    ]


def test_an_unreadable_document_at_a_url_is_skipped_with_its_kind() -> None:
    answer = httpx.Response(200, content=b"%PDF-1.7 not really", headers={})
    source = open_source(
        "https://example.com/broken.pdf", transport=httpx.MockTransport(_Recorder(answer))
    )
    assert list(source) == []
    ((location, kind),) = [(e.location, e.kind) for e in source.skips.entries]
    assert (location, kind) == ("https://example.com/broken.pdf", "broken_file")
    assert source.skips.protected_documents == {"broken.pdf"}

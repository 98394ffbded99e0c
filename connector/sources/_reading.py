"""A folder's files read and cut into chunk records: one after another in the sync's process, or
spread over a pool of worker processes (:class:`connector.sources.FolderSource`'s ``workers``).

A worker starts from the connector's fork server with this module loaded, receives the chunker
once (its initializer) and sends back, per file, plain data: the file's records, or why it could
not be read. Results come back in the files' order, with a bounded number of files in flight.
"""

from __future__ import annotations

import itertools
import os
import signal
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from connector._processes import exit_with_parent, process_context
from connector.chunking import Chunk, TokenChunker, truncated
from connector.chunks import ChunkRecord
from connector.documents import UnreadableDocument, parse_document, read_file
from connector.errors import SourceError

__all__ = [
    "Cutter",
    "FileChunks",
    "Unread",
    "chunk_metadata",
    "cut_data",
    "cut_file",
    "cut_files",
    "load_file",
    "start_reader",
]

IN_FLIGHT_PER_WORKER = 2
"""Files submitted to the pool per worker and not yet consumed: enough that a worker never
waits for its next file, few enough that memory holds only a few files' records."""


@dataclass(frozen=True, slots=True)
class Unread:
    """Why a file yields no records, as plain data: the connector's exceptions take keyword
    arguments, so they do not unpickle on their way back from a worker.

    Attributes:
        location: The file's path.
        problem: What is wrong with it (never its content).
        kind: The :class:`UnreadableDocument` kind; ``None``: the file cannot be opened at all
            (a :class:`SourceError`, which fails the read).
    """

    location: str
    problem: str
    kind: str | None

    def error(self) -> SourceError:
        """The exception reading the file in this process raises."""
        if self.kind is None:
            return SourceError(self.location, self.problem)
        return UnreadableDocument(self.location, self.problem, kind=self.kind)


@dataclass(frozen=True, slots=True)
class FileChunks:
    """One file read and cut.

    Attributes:
        records: Its chunks as records, in order.
        truncated: Those longer than a dense model's window.
        unread: Why it yields no records, when it could not be read.
    """

    records: list[ChunkRecord] = field(default_factory=list)
    truncated: int = 0
    unread: Unread | None = None


Cutter = Callable[[TokenChunker, Sequence[tuple[Path, str]]], Generator[FileChunks, None, None]]
"""Reads and cuts a folder's files, given as (path, document id), yielding them in order."""


def cut_file(chunker: TokenChunker, path: Path, relative: str) -> FileChunks:
    """Read ``path`` by its format and cut it with ``chunker`` into records of document
    ``relative`` (ids ``relative#index``)."""
    data = load_file(path)
    if isinstance(data, FileChunks):
        return data
    return cut_data(chunker, data, path.suffix, str(path), relative)


def load_file(path: Path) -> bytes | FileChunks:
    """The bytes of ``path`` when its format is one the connector reads; else why not, as the
    file's (empty) result."""
    try:
        return read_file(path)
    except UnreadableDocument as exc:
        return FileChunks(unread=Unread(exc.location, exc.problem, exc.kind))
    except SourceError as exc:
        return FileChunks(unread=Unread(exc.location, exc.problem, None))


def cut_data(
    chunker: TokenChunker,
    data: bytes,
    suffix: str,
    where: str,
    relative: str,
    extra: dict[str, object] | None = None,
) -> FileChunks:
    """A file's bytes read by its format (``suffix``) and cut into records of document
    ``relative``; ``where`` names the file in locations and errors (its path or URL), ``extra``
    goes into each record's metadata (default: ``{"path": relative}``)."""
    try:
        document = parse_document(data, suffix, where)
    except UnreadableDocument as exc:
        return FileChunks(unread=Unread(exc.location, exc.problem, exc.kind))
    chunks = chunker.chunk_document(document)
    records = [
        ChunkRecord(
            text=chunk.text,
            metadata=chunk_metadata(relative, chunk, len(chunks), document.title)
            | (extra if extra is not None else {"path": relative}),
            chunk_id=f"{relative}#{chunk.index}",
            location=f"{where}#{chunk.index}",
        )
        for chunk in chunks
    ]
    over = sum(1 for chunk in chunks if truncated(chunk.tokens, chunker.windows))
    return FileChunks(records, over)


def cut_files(
    chunker: TokenChunker, files: Sequence[tuple[Path, str]], workers: int
) -> Generator[FileChunks, None, None]:
    """Each of ``files`` (path, document id) read and cut, in order.

    With ``workers`` above 1 (and more than one file), the files are read by a pool of that many
    processes (at most one per file), :data:`IN_FLIGHT_PER_WORKER` files per worker at a time.
    The pool is shut down when the iteration ends however it ends (exhausted, closed early, an
    exception or Ctrl-C in the caller), after the files being read finish: no worker outlives
    it.
    """
    processes = min(workers, len(files))
    if processes <= 1:
        for path, relative in files:
            yield cut_file(chunker, path, relative)
        return
    pool = ProcessPoolExecutor(
        max_workers=processes,
        mp_context=process_context(),
        initializer=start_reader,
        initargs=(chunker,),
    )
    try:
        upcoming = iter(files)
        first = itertools.islice(upcoming, processes * IN_FLIGHT_PER_WORKER)
        pending = deque(pool.submit(_cut_in_worker, *item) for item in first)
        while pending:
            result = pending.popleft().result()
            following = next(upcoming, None)
            if following is not None:  # on its way before the caller takes this file's records
                pending.append(pool.submit(_cut_in_worker, *following))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# The chunker of a worker process, received once by its initializer.
_chunker: TokenChunker | None = None


def start_reader(chunker: TokenChunker) -> None:
    """A worker's initializer: keeps ``chunker`` for every file of the run."""
    global _chunker
    # Ctrl-C reaches the whole process group; the main process stops the read and the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    # The pool's processes share the cores already: the tokenizers library's own threads
    # (read when it encodes, not when it loads) would only compete with them.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _chunker = chunker


def _cut_in_worker(path: Path, relative: str) -> FileChunks:
    assert _chunker is not None, "worker not initialized"
    return cut_file(_chunker, path, relative)


def chunk_metadata(
    doc_id: str, chunk: Chunk, count: int, title: str | None = None
) -> dict[str, object]:
    """Where ``chunk`` sits in document ``doc_id``: its index of ``count``, its character
    offsets into the document's text, and its page, heading path and the document's title where
    there are any."""
    metadata: dict[str, object] = {
        "doc_id": doc_id,
        "chunk_index": chunk.index,
        "chunk_count": count,
        "start": chunk.start,
        "end": chunk.end,
    }
    if chunk.page is not None:
        metadata["page"] = chunk.page
    if chunk.headings:
        metadata["headings"] = list(chunk.headings)
    if title is not None:
        metadata["title"] = title
    return metadata

"""A folder of documents, each read by its format and cut into chunks of the model's tokens."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

from connector.chunking import TokenChunker
from connector.chunks import ChunkRecord
from connector.documents import UnreadableDocument
from connector.errors import SourceError
from connector.sources._reading import Cutter, cut_files
from connector.sources._skips import SkipLog

__all__ = ["FolderSource"]


class FolderSource:
    """Every document under a folder (PDF, HTML, DOCX, PPTX, Markdown, text), cut into chunks of
    the dense model's tokens.

    Files are visited in order of their relative path, compared part by part; hidden files and
    folders (names starting with ``.``) are left out. A file in no format the connector reads,
    or one it cannot read (an encrypted PDF, a broken DOCX, text that is not UTF-8), is a skipped
    record with its path and kind, never silence. Chunk ids are ``relative/path.md#index``: a
    document that changes is replaced chunk by chunk, and one that shrinks loses the chunks it no
    longer has (the sync deletes ids it did not read).

    Args:
        path: The folder.
        name: The source's identity; by default the folder's resolved absolute path.
        chunker: Cuts each document (default: the bundled all-MiniLM-L6-v2's tokens, its window).
        strict: Raise on the first file that cannot be read instead of skipping it.
        workers: Processes that read and cut the files, a few files ahead of the sync (``1``:
            in this process, one file after another). The records, their order and what is
            skipped are the same for any number. ``None``: as many as a sync of the folder's
            size starts when ``sync.workers`` is unset (one per core but one; 1 under 8 MiB).

    Attributes:
        name: The source's identity.
        total_bytes: The summed size of the files found.
        bytes_read: Bytes of files consumed by the current iteration so far.
        skips: Files the current iteration skipped; raised instead when strict.
        truncated: Chunks of the current iteration longer than a dense model's window.
        workers: Processes that read and cut the files (``1``: none started).
        cutter: Reads and cuts the files instead of this process and its ``workers``, when
            set: given the chunker and the (path, document id) pairs, it yields each file's
            :class:`~connector.sources._reading.FileChunks` in order (a Ray run lends its
            actors this way for the run).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        chunker: TokenChunker | None = None,
        strict: bool = False,
        workers: int | None = 1,
    ) -> None:
        self.root = Path(path)
        if not self.root.is_dir():
            raise SourceError(str(path), "not a folder")
        self.name = name if name is not None else str(self.root.resolve())
        self.chunker = chunker if chunker is not None else TokenChunker.for_models({})
        self._files = self._walk()
        self.total_bytes: int | None = sum(size for _, size in self._files)
        self.bytes_read = 0
        self.skips = SkipLog(strict=strict)
        self.truncated = 0
        if workers is None:
            # Imported here: the pipeline imports the sources.
            from connector.pipeline._workers import auto_workers

            workers = auto_workers(self.total_bytes)
        self.workers = workers
        self.cutter: Cutter | None = None

    def _walk(self) -> list[tuple[Path, int]]:
        found: list[tuple[Path, int]] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for filename in filenames:
                if filename.startswith("."):
                    continue
                path = Path(dirpath, filename)
                try:
                    status = path.stat()  # one call: whether it is a file, and its size
                    if stat.S_ISREG(status.st_mode):
                        found.append((path, status.st_size))
                except FileNotFoundError:
                    continue  # a broken link, or a file gone since the listing: not a file
                except OSError as exc:
                    raise SourceError(str(path), f"cannot read: {exc.strerror or exc}") from None
        found.sort(key=lambda item: item[0].relative_to(self.root).parts)
        return found

    def __iter__(self) -> Iterator[ChunkRecord]:
        self.bytes_read = 0
        self.truncated = 0
        self.skips.reset()
        files = [(path, path.relative_to(self.root).as_posix()) for path, _ in self._files]
        # Closed with this iteration, however it ends: the pool's processes end with it.
        if self.cutter is not None:
            reading = self.cutter(self.chunker, files)
        else:
            reading = cut_files(self.chunker, files, self.workers)
        with closing(reading) as results:
            for (_, size), (_, relative), cut in zip(self._files, files, results, strict=True):
                self.bytes_read += size
                if cut.unread is not None:
                    error = cut.unread.error()
                    if not isinstance(error, UnreadableDocument):
                        raise error  # the file cannot be opened at all
                    self.skips.skip(error, document=relative)  # its stored chunks stay
                    continue
                self.truncated += cut.truncated
                yield from cut.records

"""JSONL records: the line parser shared by the file and HTTP sources, and the file source."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connector.chunks import ChunkRecord
from connector.errors import InvalidRecord, SourceError
from connector.sources._skips import SkipLog

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "JsonlFileSource",
    "check_id",
    "check_text",
    "decode_line",
    "json_type",
    "parse_line",
    "parse_or_skip",
]

# Keys with a meaning of their own; every other top-level key is copied into the metadata.
_RESERVED = frozenset({"id", "_id", "text", "title", "metadata"})

# A record is a chunk, not a document: a line this long is an export gone wrong, and reading it
# whole would put the memory of the run in the hands of the input.
DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024


def json_type(value: Any) -> str:
    """Name a decoded JSON value's type the way JSON does (``object``, ``array``, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def decode_line(raw: bytes, location: str) -> str:
    """Decode one line as strict UTF-8, without its line ending.

    Args:
        raw: The line's bytes, with or without the trailing newline.
        location: ``path:line`` or ``url:line``, for the error message.

    Returns:
        The decoded line.

    Raises:
        InvalidRecord: The line is not valid UTF-8; the message names the byte and its column.
    """
    raw = raw.rstrip(b"\r\n")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start]
        raise InvalidRecord(
            location,
            f"not valid UTF-8 (byte 0x{bad:02X} at column {exc.start + 1})",
            kind="not_utf8",
        ) from None


def parse_line(raw: bytes, location: str) -> ChunkRecord | None:
    """Parse one JSONL line into a record.

    Accepts ``{"id", "text", "metadata"}`` records and BEIR ``{"_id", "title", "text"}`` records.
    A title is put before the text and into ``metadata["title"]``; unknown top-level keys are
    copied into the metadata without overwriting it.

    Args:
        raw: The line's bytes, with or without the trailing newline.
        location: ``path:line`` or ``url:line``; set on the record and used in errors.

    Returns:
        The record, or ``None`` for a blank line.

    Raw control characters inside strings are accepted (many exporters write raw tabs); the
    text is stored as given.

    Raises:
        InvalidRecord: The line is not UTF-8, not JSON, not an object, or has a missing or
            ill-typed field; ``chunk_id`` is set when the id could be read.
    """
    line = decode_line(raw, location).removeprefix("\ufeff")
    if not line.strip():
        return None
    try:
        obj = json.loads(line, strict=False)
    except json.JSONDecodeError as exc:
        problem = f"invalid JSON: {exc.msg} at column {exc.colno}"
        raise InvalidRecord(location, problem, kind="invalid_json") from None
    except RecursionError:
        raise InvalidRecord(
            location, "invalid JSON: nested too deeply", kind="invalid_json"
        ) from None
    if not isinstance(obj, dict):
        problem = f"expected a JSON object, got {json_type(obj)}"
        raise InvalidRecord(location, problem, kind="not_an_object")

    chunk_id = _chunk_id(obj, location)
    text = _text(obj, location, chunk_id)
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict):
        problem = f'"metadata" must be a JSON object, got {json_type(metadata)}'
        raise InvalidRecord(location, problem, kind="bad_metadata", chunk_id=chunk_id)
    title = obj.get("title")
    if title is not None and not isinstance(title, str):
        problem = f'"title" must be a string, got {json_type(title)}'
        raise InvalidRecord(location, problem, kind="bad_title", chunk_id=chunk_id)
    if title and title.strip():
        text = f"{title}\n{text}"
        metadata.setdefault("title", title)
    for key, value in obj.items():
        if key not in _RESERVED:
            metadata.setdefault(key, value)
    return ChunkRecord(text=text, metadata=metadata, chunk_id=chunk_id, location=location)


def _chunk_id(obj: dict[str, Any], location: str) -> str:
    key = "id" if "id" in obj else "_id" if "_id" in obj else None
    if key is None:
        raise InvalidRecord(location, 'missing "id" (or "_id")', kind="missing_id")
    return check_id(obj[key], key, location)


def check_id(value: Any, key: str, location: str) -> str:
    """A record's id from the value of its ``key``: a non-blank string, or an integer.

    Raises:
        InvalidRecord: Any other value (kind ``bad_id``).
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        problem = f'"{key}" must be a string or an integer, got {json_type(value)}'
        raise InvalidRecord(location, problem, kind="bad_id")
    value = str(value)
    if not value.strip():
        raise InvalidRecord(location, f'empty "{key}"', kind="bad_id")
    return value


def _text(obj: dict[str, Any], location: str, chunk_id: str) -> str:
    if "text" not in obj:
        raise InvalidRecord(location, 'missing "text"', kind="missing_text", chunk_id=chunk_id)
    return check_text(obj["text"], "text", location, chunk_id)


def check_text(value: Any, key: str, location: str, chunk_id: str) -> str:
    """A record's text from the value of its ``key``: a string that is not blank.

    Raises:
        InvalidRecord: A value of another type (``bad_text``) or blank (``empty_text``).
    """
    if not isinstance(value, str):
        problem = f'"{key}" must be a string, got {json_type(value)}'
        raise InvalidRecord(location, problem, kind="bad_text", chunk_id=chunk_id)
    if not value.strip():
        raise InvalidRecord(location, f'empty "{key}"', kind="empty_text", chunk_id=chunk_id)
    return value


class JsonlFileSource:
    """A local JSONL file, read line by line.

    A malformed record is skipped and noted in :attr:`skips` (or raised when strict); a line
    longer than ``max_line_bytes`` is skipped without being held in memory.

    Attributes:
        name: The source's identity; by default the file's resolved absolute path.
        total_bytes: The file's size.
        bytes_read: Bytes consumed by the current iteration so far.
        skips: The records the current iteration skipped.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        strict: bool = False,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.path = Path(path)
        self._shown = str(path)
        try:
            info = self.path.stat()
        except OSError as exc:
            raise SourceError(self._shown, f"cannot read: {exc.strerror or exc}") from None
        # A pipe has no size to show progress against.
        self.total_bytes: int | None = info.st_size if stat.S_ISREG(info.st_mode) else None
        self.name = name if name is not None else str(self.path.resolve())
        self.bytes_read = 0
        self.skips = SkipLog(strict=strict)
        self.max_line_bytes = max_line_bytes

    def __iter__(self) -> Iterator[ChunkRecord]:
        self.bytes_read = 0
        self.skips.reset()
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise SourceError(self._shown, f"cannot read: {exc.strerror or exc}") from None
        with handle:
            lineno = 0
            while True:
                location = f"{self._shown}:{lineno + 1}"
                try:
                    raw = handle.readline(self.max_line_bytes + 1)
                    if len(raw) > self.max_line_bytes and not raw.endswith(b"\n"):
                        rest, newline = _discard_line(handle)
                        self.bytes_read += len(raw) + rest
                        lineno += 1
                        length = len(raw) + rest - newline
                        self.skips.skip(too_long(location, length, self.max_line_bytes))
                        continue
                except OSError as exc:
                    raise SourceError(location, f"cannot read: {exc.strerror or exc}") from None
                if not raw:
                    return
                lineno += 1
                self.bytes_read += len(raw)
                record = parse_or_skip(raw, location, self.skips)
                if record is not None:
                    yield record


def parse_or_skip(raw: bytes, location: str, skips: SkipLog) -> ChunkRecord | None:
    """:func:`parse_line`, with a bad record noted in ``skips`` (raised when it is strict) and a
    blank line counted; ``None`` for both."""
    try:
        record = parse_line(raw, location)
    except InvalidRecord as exc:
        skips.skip(exc)
        return None
    if record is None:
        skips.blank_lines += 1
    return record


def too_long(location: str, size: int, limit: int) -> InvalidRecord:
    """The error of a line over the length limit (its id is unknown: it was never parsed)."""
    return InvalidRecord(
        location,
        f"line is {size:,} bytes, over the limit of {limit:,} (source.max_line_bytes)",
        kind="line_too_long",
    )


def _discard_line(handle: Any) -> tuple[int, int]:
    """Read to the end of the current line in bounded pieces.

    Returns:
        The bytes consumed, and 1 when they end with a newline (else 0, at the end of the file).
    """
    consumed = 0
    while True:
        piece = handle.readline(1 << 20)
        consumed += len(piece)
        if not piece:
            return consumed, 0
        if piece.endswith(b"\n"):
            return consumed, 1

"""JSONL records: the line parser shared by the file and HTTP sources, and the file source."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connector.chunks import ChunkRecord
from connector.errors import SourceError

__all__ = ["JsonlFileSource", "decode_line", "json_type", "parse_line"]

# Keys with a meaning of their own; every other top-level key is copied into the metadata.
_RESERVED = frozenset({"id", "_id", "text", "title", "metadata"})


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
        SourceError: The line is not valid UTF-8; the message names the byte and its column.
    """
    raw = raw.rstrip(b"\r\n")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start]
        raise SourceError(
            location, f"not valid UTF-8 (byte 0x{bad:02X} at column {exc.start + 1})"
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

    Raises:
        SourceError: The line is not UTF-8, not JSON, not an object, or has a missing or
            ill-typed field.
    """
    line = decode_line(raw, location).removeprefix("\ufeff")
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SourceError(location, f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise SourceError(location, "invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise SourceError(location, f"expected a JSON object, got {json_type(obj)}")

    chunk_id = _chunk_id(obj, location)
    text = _text(obj, location)
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict):
        raise SourceError(location, f'"metadata" must be a JSON object, got {json_type(metadata)}')
    title = obj.get("title")
    if title is not None and not isinstance(title, str):
        raise SourceError(location, f'"title" must be a string, got {json_type(title)}')
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
        raise SourceError(location, 'missing "id" (or "_id")')
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, str | int):
        problem = f'"{key}" must be a string or an integer, got {json_type(value)}'
        raise SourceError(location, problem)
    value = str(value)
    if not value.strip():
        raise SourceError(location, f'empty "{key}"')
    return value


def _text(obj: dict[str, Any], location: str) -> str:
    if "text" not in obj:
        raise SourceError(location, 'missing "text"')
    text = obj["text"]
    if not isinstance(text, str):
        raise SourceError(location, f'"text" must be a string, got {json_type(text)}')
    if not text.strip():
        raise SourceError(location, 'empty "text"')
    return text


class JsonlFileSource:
    """A local JSONL file, read line by line.

    Attributes:
        name: The source's identity; by default the file's resolved absolute path.
        total_bytes: The file's size.
        bytes_read: Bytes consumed by the current iteration so far.
    """

    def __init__(self, path: str | os.PathLike[str], *, name: str | None = None) -> None:
        self.path = Path(path)
        self._shown = str(path)
        try:
            self.total_bytes: int | None = self.path.stat().st_size
        except OSError as exc:
            raise SourceError(self._shown, f"cannot read: {exc.strerror or exc}") from None
        self.name = name if name is not None else str(self.path.resolve())
        self.bytes_read = 0

    def __iter__(self) -> Iterator[ChunkRecord]:
        self.bytes_read = 0
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise SourceError(self._shown, f"cannot read: {exc.strerror or exc}") from None
        with handle:
            lineno = 0
            while True:
                try:
                    raw = handle.readline()
                except OSError as exc:
                    raise SourceError(
                        f"{self._shown}:{lineno + 1}", f"cannot read: {exc.strerror or exc}"
                    ) from None
                if not raw:
                    return
                lineno += 1
                self.bytes_read += len(raw)
                record = parse_line(raw, f"{self._shown}:{lineno}")
                if record is not None:
                    yield record

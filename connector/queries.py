"""A file of queries for ``connector search --queries``: BEIR's ``queries.jsonl`` layout."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from connector.errors import SourceError
from connector.sources._jsonl import decode_line, json_type

__all__ = ["Query", "read_queries"]


@dataclass(frozen=True, slots=True)
class Query:
    """One query of a batch."""

    query_id: str
    text: str
    location: str
    """``file:line``, for error messages."""


def read_queries(path: str | os.PathLike[str]) -> Iterator[Query]:
    """Stream the queries of a JSONL file: one ``{"_id": ..., "text": ...}`` object per line.

    ``id`` is accepted for ``_id``; other keys are ignored; blank lines are skipped.

    Raises:
        SourceError: The file is unreadable, or a line is not such an object, or repeats an id;
            the message names the file and line.
    """
    shown = str(path)
    seen: set[str] = set()
    try:
        handle = Path(path).open("rb")
    except OSError as exc:
        raise SourceError(shown, f"cannot read: {exc.strerror or exc}") from None
    with handle:
        for lineno, raw in enumerate(handle, 1):
            location = f"{shown}:{lineno}"
            line = decode_line(raw, location).removeprefix("\ufeff")
            if not line.strip():
                continue
            query = _parse(line, location)
            if query.query_id in seen:
                raise SourceError(location, f"duplicate query id {query.query_id!r}")
            seen.add(query.query_id)
            yield query


def _parse(line: str, location: str) -> Query:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SourceError(location, f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise SourceError(location, f"expected a JSON object, got {json_type(obj)}")
    key = "_id" if "_id" in obj else "id" if "id" in obj else None
    if key is None:
        raise SourceError(location, 'missing "_id" (or "id")')
    query_id = obj[key]
    if isinstance(query_id, bool) or not isinstance(query_id, str | int):
        raise SourceError(location, f'"{key}" must be a string or an integer')
    if "text" not in obj:
        raise SourceError(location, 'missing "text"')
    text = obj["text"]
    if not isinstance(text, str):
        raise SourceError(location, f'"text" must be a string, got {json_type(text)}')
    if not text.strip():
        raise SourceError(location, 'empty "text"')
    return Query(query_id=str(query_id), text=text, location=location)

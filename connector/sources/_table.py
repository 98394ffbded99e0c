"""Tables as sources: Parquet (through pyarrow, batch by batch) and CSV (the standard library),
one record per row, with the id, text and metadata columns named by the settings."""

from __future__ import annotations

import csv
import datetime
import io
import os
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from connector.chunks import ChunkRecord
from connector.documents._model import INSTALL_HINT
from connector.errors import InvalidRecord, SourceError
from connector.sources._jsonl import DEFAULT_MAX_LINE_BYTES, check_id, check_text
from connector.sources._skips import SkipLog

__all__ = ["TableSource"]

# Rows converted to Python at a time: bounded memory whatever the file's row groups.
_BATCH_ROWS = 1024


class TableSource:
    """A Parquet or CSV file, one record per row.

    Parquet is read in batches of rows, never whole; CSV row by row (UTF-8, a byte-order mark
    allowed, the first row naming the columns). A row whose id or text is missing, empty or of
    the wrong type is skipped and noted in :attr:`skips` (raised when strict), with the kinds
    JSONL records use.

    Attributes:
        name: The source's identity; by default the file's resolved absolute path.
        total_bytes: The file's size.
        bytes_read: How far the current iteration is, in bytes of the file (for Parquet,
            estimated from the rows read).
        skips: The rows the current iteration skipped.
    """

    SUFFIXES = frozenset({".parquet", ".csv"})
    """The file suffixes read (case ignored)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        id_field: str = "id",
        text_field: str = "text",
        metadata_fields: Iterable[str] = (),
        strict: bool = False,
    ) -> None:
        self.path = Path(path)
        self._shown = str(path)
        self._format = self.path.suffix.lower()
        if self._format not in self.SUFFIXES:
            raise SourceError(self._shown, "not a .parquet or .csv file")
        try:
            self.total_bytes: int | None = self.path.stat().st_size
        except OSError as exc:
            raise SourceError(self._shown, f"cannot read: {exc.strerror or exc}") from None
        self.name = name if name is not None else str(self.path.resolve())
        self.id_field = id_field
        self.text_field = text_field
        self.metadata_fields = tuple(metadata_fields)
        self.bytes_read = 0
        self.skips = SkipLog(strict=strict)

    @property
    def _columns(self) -> list[str]:
        return list(dict.fromkeys((self.id_field, self.text_field, *self.metadata_fields)))

    def __iter__(self) -> Iterator[ChunkRecord]:
        self.bytes_read = 0
        self.skips.reset()
        rows = self._parquet_rows() if self._format == ".parquet" else self._csv_rows()
        for number, row in enumerate(rows, start=1):
            location = f"{self._shown}:row {number}"
            try:
                yield self._record(row, location)
            except InvalidRecord as exc:
                self.skips.skip(exc)
        self.bytes_read = self.total_bytes or 0

    def _record(self, row: dict[str, Any], location: str) -> ChunkRecord:
        value = row.get(self.id_field)
        if value is None:
            raise InvalidRecord(location, f'missing "{self.id_field}"', kind="missing_id")
        chunk_id = check_id(value, self.id_field, location)
        text = row.get(self.text_field)
        if text is None:
            problem = f'missing "{self.text_field}"'
            raise InvalidRecord(location, problem, kind="missing_text", chunk_id=chunk_id)
        text = check_text(text, self.text_field, location, chunk_id)
        metadata = {key: _plain(row.get(key)) for key in self.metadata_fields}
        return ChunkRecord(text=text, metadata=metadata, chunk_id=chunk_id, location=location)

    def _check_columns(self, present: Iterable[str]) -> None:
        missing = [column for column in self._columns if column not in set(present)]
        if missing:
            names = ", ".join(repr(column) for column in missing)
            raise SourceError(
                self._shown,
                f"no column {names} (see source.id_field, text_field, metadata_fields)",
            )

    def _parquet_rows(self) -> Iterator[dict[str, Any]]:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise SourceError(
                self._shown, f"reading Parquet needs pyarrow: {INSTALL_HINT}"
            ) from None
        import pyarrow as pa

        try:
            # Pre-buffering reads ahead over many row groups: memory that grows with the file.
            table = pq.ParquetFile(self.path, pre_buffer=False)
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(self._shown, f"not a readable Parquet file ({exc})") from None
        with table:
            self._check_columns(table.schema_arrow.names)
            total_rows = max(1, table.metadata.num_rows)
            done = 0
            try:
                for batch in table.iter_batches(batch_size=_BATCH_ROWS, columns=self._columns):
                    rows = batch.to_pylist()
                    yield from rows
                    done += len(rows)
                    self.bytes_read = (self.total_bytes or 0) * done // total_rows
            except (OSError, pa.ArrowException) as exc:
                raise SourceError(self._shown, f"not a readable Parquet file ({exc})") from None

    def _csv_rows(self) -> Iterator[dict[str, Any]]:
        # A long text is one field: allow fields as long as a JSONL line may be.
        csv.field_size_limit(max(csv.field_size_limit(), DEFAULT_MAX_LINE_BYTES))
        try:
            raw = self.path.open("rb")
        except OSError as exc:
            raise SourceError(self._shown, f"cannot read: {exc.strerror or exc}") from None
        with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            try:
                self._check_columns(reader.fieldnames or ())
                for row in reader:
                    self.bytes_read = raw.tell()
                    yield row
            except UnicodeDecodeError as exc:
                problem = f"not valid UTF-8 (byte 0x{exc.object[exc.start]:02X})"
                raise SourceError(self._shown, problem) from None
            except csv.Error as exc:
                raise SourceError(f"{self._shown}:{reader.line_num}", f"bad CSV: {exc}") from None


def _plain(value: Any) -> Any:
    """A cell as a JSON value for the payload: dates as ISO strings, decimals as numbers."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value

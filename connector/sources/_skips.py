"""Records a source could not use: skipped and reported, or fatal when the run is strict."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from connector.errors import InvalidRecord

__all__ = ["SkipLog", "Skipped"]

# Enough to find and fix a broken export; the counts by reason stay complete beyond it.
KEPT_ENTRIES = 1000


@dataclass(frozen=True, slots=True)
class Skipped:
    """One record that was not synced, and why (never its text)."""

    location: str
    kind: str
    reason: str
    chunk_id: str | None = None


@dataclass(slots=True)
class SkipLog:
    """The records a read skipped.

    Attributes:
        strict: Raise the first :class:`InvalidRecord` instead of skipping it.
        entries: The first :data:`KEPT_ENTRIES` skipped records.
        count: Every skipped record.
        by_kind: Skipped records per kind of problem.
        protected_ids: Ids of skipped records: their stored points are kept, not deleted.
        protected_documents: Documents skipped whole (a file that could not be read): the
            stored chunks of each (``metadata.doc_id``) are kept, not deleted.
        unidentified: Skipped records whose id could not be read.
        blank_lines: Blank lines, which carry nothing and are not counted as skipped.
    """

    strict: bool = False
    entries: list[Skipped] = field(default_factory=list)
    count: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    protected_ids: set[str] = field(default_factory=set)
    protected_documents: set[str] = field(default_factory=set)
    unidentified: int = 0
    blank_lines: int = 0

    def skip(self, error: InvalidRecord, document: str | None = None) -> None:
        """Note ``error``'s record as skipped (with ``document``: a whole document, whose stored
        chunks stay).

        Raises:
            InvalidRecord: ``error`` itself, when the log is strict.
        """
        if self.strict:
            raise error
        self.count += 1
        self.by_kind[error.kind] += 1
        if document is not None:
            self.protected_documents.add(document)
        elif error.chunk_id is None:
            self.unidentified += 1
        else:
            self.protected_ids.add(error.chunk_id)
        if len(self.entries) < KEPT_ENTRIES:
            self.entries.append(Skipped(error.location, error.kind, error.problem, error.chunk_id))

    def reset(self) -> None:
        """Forget everything (a source is read again from the start)."""
        self.entries.clear()
        self.count = 0
        self.by_kind.clear()
        self.protected_ids.clear()
        self.protected_documents.clear()
        self.unidentified = 0
        self.blank_lines = 0

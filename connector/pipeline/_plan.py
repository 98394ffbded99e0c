"""The first stage of a sync: read a source into windows, claim each chunk's point id, and plan
what each chunk needs from the stored state of its point."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connector.chunks import ChunkRecord, content_hash, point_id, text_hash
from connector.errors import InvalidRecord, SourceError
from connector.sources._skips import SkipLog
from connector.store import PointState, Writer, as_uuid_int

if TYPE_CHECKING:
    from connector.sources import Source

__all__ = ["Planner", "Window"]


@dataclass(slots=True)
class Window:
    """A window of chunks on its way through the stages; each stage fills in its part."""

    items: list[tuple[ChunkRecord, str]]
    """(chunk, point id) in source order."""
    bytes_read: int
    """How far the source was read when the window was complete."""
    plans: list[tuple[str, list[str]]] = field(default_factory=list)
    """Per chunk: ``full``, ``partial``, ``payload`` or ``skip``, and the vectors to compute."""
    needs: dict[str, list[int]] = field(default_factory=dict)
    """Per vector name: the window positions that need it."""
    vectors: dict[str, dict[int, Any]] = field(default_factory=dict)
    fallbacks: dict[int, str] = field(default_factory=dict)
    """Why a position's sparse vector fell back to metadata."""
    dense_ms: float = 0.0
    sparse: Any = None
    """The sparse generator's result for the window, for the run's record."""
    sparse_empty: int = 0
    written: bool = False
    """Its points were written by the Ray actor that encoded it: the driver only counts it."""


class Planner:
    """Claims point ids (the first record with an id wins) and plans each window.

    Args:
        writer: Reads the stored state of a window's points.
        signatures: Per vector name, the signature its current model writes.
        strict: A repeated chunk id is fatal instead of skipped and reported.
        new_source: The collection held no point of the source when the run started: every
            chunk is new, and no window asks for the stored state of its points (a first sync
            of a large source spends no reads on points that cannot exist).
    """

    def __init__(
        self,
        writer: Writer,
        signatures: dict[str, str],
        *,
        strict: bool,
        new_source: bool = False,
    ) -> None:
        self.writer = writer
        self.signatures = signatures
        self.new_source = new_source
        self.seen: set[int] = set()
        """Every point id claimed (as :func:`as_uuid_int`); complete once the read is."""
        self.duplicates = SkipLog(strict=strict)

    def windows(self, source: Source, size: int) -> Iterator[Window]:
        """Planned windows of up to ``size`` claimed chunks, in source order.

        Raises:
            SourceError: The source is unreadable, a chunk has no id, or (strict) an id repeats.
        """
        items: list[tuple[ChunkRecord, str]] = []
        for chunk in source:
            pid = self._claim(chunk, source.name)
            if pid is None:
                continue
            items.append((chunk, pid))
            if len(items) >= size:
                yield self._plan_window(items, source.bytes_read)
                items = []
        if items:
            yield self._plan_window(items, source.bytes_read)

    def _claim(self, chunk: ChunkRecord, source: str) -> str | None:
        """The chunk's point id, or ``None`` when its id was already read in this run (the repeat
        is skipped and reported, or fatal when strict)."""
        if chunk.chunk_id is None:
            raise SourceError(chunk.location or source, "chunk has no id")
        pid = point_id(source, chunk.chunk_id)
        key = as_uuid_int(pid)
        if key in self.seen:
            self.duplicates.skip(
                InvalidRecord(
                    chunk.location or source,
                    f"duplicate chunk id {chunk.chunk_id!r} (already read earlier in this source)",
                    kind="duplicate_id",
                )
            )
            return None
        self.seen.add(key)
        return pid

    def _plan_window(self, items: list[tuple[ChunkRecord, str]], bytes_read: int) -> Window:
        window = Window(items=items, bytes_read=bytes_read)
        states = {} if self.new_source else self.writer.fetch_state([pid for _, pid in items])
        window.needs = {name: [] for name in self.signatures}
        for index, (chunk, pid) in enumerate(items):
            kind, missing = self._plan(chunk, states.get(pid))
            window.plans.append((kind, missing))
            for name in missing:
                window.needs[name].append(index)
        return window

    def _plan(self, chunk: ChunkRecord, state: PointState | None) -> tuple[str, list[str]]:
        """``full`` (new or text changed), ``partial`` (some vectors stale: a model changed, or
        sparse was off or fell back), ``payload`` (metadata changed) or ``skip``."""
        names = list(self.signatures)
        if state is None or state.text_hash != text_hash(chunk.text):
            return "full", names
        missing = [n for n in names if state.encoded_with.get(n) != self.signatures[n]]
        if missing:
            return "partial", missing
        if state.content_hash != content_hash(chunk.text, chunk.metadata):
            return "payload", []
        return "skip", []

"""Stages of a sync that overlap: each in its own thread, joined by small bounded queues.

A producer thread yields items, each stage thread maps them in order, and the caller's thread
consumes them: while one stage works on item k, the one before it already works on item k+1. The
queues hold a few items each, so memory stays flat however long the input is, and a slow stage
holds back the ones before it. The producer and the stages are timed (:attr:`Flow.busy_s`).

A failure in a stage lets the stages after it finish what came before (as a one-thread loop
would have), stops those before it, and is raised in the caller's thread. A failure in the
consumer, or Ctrl-C there, stops every stage at once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from connector.telemetry import current_context, in_context

__all__ = ["Flow", "Stage"]

T = TypeVar("T")
R = TypeVar("R")
V = TypeVar("V")

_END = object()
_POLL_S = 0.05
"""How often a waiting thread looks whether the run stopped (and the caller's thread whether a
signal came: a wait with a timeout lets Ctrl-C through)."""
_ABANDON_S = 2.0
"""How long a stopped run waits for the producer, which may be blocked reading a pipe."""


@dataclass(frozen=True, slots=True)
class Stage(Generic[T]):
    """One step between the producer and the consumer."""

    name: str
    run: Callable[[T], T]


class _Halted(Exception):
    """A thread's run stopped from outside; it leaves quietly."""


class Flow(Generic[T]):
    """Runs a producer, stages and a consumer over one stream of items.

    Args:
        depth: Items that may wait between two stages; 0: no overlap, every part in turn in the
            caller's thread (what a sync did before its stages overlapped).
        busy_s: Where to count the seconds each part spends working (not waiting on its
            neighbours), by name, as the run goes.
    """

    def __init__(self, depth: int = 2, busy_s: dict[str, float] | None = None) -> None:
        self.depth = depth
        self.busy_s = busy_s if busy_s is not None else {}
        self._failure: BaseException | None = None
        self._cut: int | None = None  # index of the part that failed first
        self._aborted = False
        self._lock = threading.Lock()
        self._parts = 0

    def run(
        self,
        produce: tuple[str, Callable[[], Iterator[T]]],
        stages: list[Stage[T]],
        consume: Callable[[T], None],
    ) -> None:
        """Feed every produced item through the stages into ``consume``, in order.

        Raises:
            BaseException: The first failure of any part, as it was raised.
        """
        names = [produce[0], *(s.name for s in stages)]
        self._parts = len(names) + 1
        self.busy_s.update(dict.fromkeys(names, 0.0))
        if self.depth == 0:
            self._in_turn(produce[0], produce[1](), stages, consume)
            return
        queues: list[queue.Queue[object]] = [
            queue.Queue(maxsize=self.depth) for _ in range(len(stages) + 1)
        ]
        # Spans opened in the stage threads have the caller's current span as their parent.
        parent = current_context()
        threads = [
            threading.Thread(
                target=self._produce,
                args=(produce, queues[0], parent),
                name=f"sync-{produce[0]}",
                daemon=True,
            )
        ]
        for index, stage in enumerate(stages, start=1):
            threads.append(
                threading.Thread(
                    target=self._map,
                    args=(index, stage, queues[index - 1], queues[index], parent),
                    name=f"sync-{stage.name}",
                    daemon=True,
                )
            )
        for thread in threads:
            thread.start()
        try:
            self._consume(consume, queues[-1])
        except BaseException:
            self._aborted = True
            self._join(threads)
            raise
        self._join(threads)
        if self._failure is not None:
            raise self._failure

    def _in_turn(
        self, read: str, items: Iterator[T], stages: list[Stage[T]], consume: Callable[[T], None]
    ) -> None:
        """Depth 0: one item at a time through every part, all in the caller's thread."""
        for item in self._timed(read, items):
            for stage in stages:
                item = self.timed(stage.name, stage.run, item)
            consume(item)

    def _timed(self, name: str, items: Iterator[T]) -> Iterator[T]:
        """``items``, the time each takes to come counted as ``name``'s busy time."""
        while True:
            started = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                self.busy_s[name] += time.perf_counter() - started
            yield item

    def timed(self, name: str, run: Callable[[V], R], item: V) -> R:
        """``run(item)``, its time counted as ``name``'s busy time (the consumer times its own
        parts with this: waiting on a full queue downstream is not work)."""
        started = time.perf_counter()
        try:
            return run(item)
        finally:
            self.busy_s[name] = self.busy_s.get(name, 0.0) + time.perf_counter() - started

    # -- the parts -------------------------------------------------------------------------------

    def _produce(
        self,
        produce: tuple[str, Callable[[], Iterator[T]]],
        out: queue.Queue[object],
        parent: object,
    ) -> None:
        name, items = produce
        with in_context(parent):
            try:
                for item in self._timed(name, items()):
                    self._put(0, out, item)
                self._put(0, out, _END)
            except _Halted:
                pass
            except BaseException as exc:  # handed to the caller's thread
                self._fail(0, exc, out)

    def _map(
        self,
        index: int,
        stage: Stage[T],
        inbox: queue.Queue[object],
        out: queue.Queue[object],
        parent: object,
    ) -> None:
        with in_context(parent):
            try:
                while True:
                    item = self._get(index, inbox)
                    if item is _END:
                        self._put(index, out, _END)
                        return
                    done = self.timed(stage.name, stage.run, item)  # type: ignore[arg-type]
                    self._put(index, out, done)
            except _Halted:
                pass
            except BaseException as exc:  # handed to the caller's thread
                self._fail(index, exc, out)

    def _consume(self, consume: Callable[[T], None], inbox: queue.Queue[object]) -> None:
        last = self._parts - 1
        while True:
            item = self._get(last, inbox)
            if item is _END:
                return
            consume(item)  # type: ignore[arg-type]

    # -- hand-overs ------------------------------------------------------------------------------

    def _halted(self, index: int) -> bool:
        """Whether part ``index`` must stop: the run was aborted, or a later part failed."""
        return self._aborted or (self._cut is not None and index < self._cut)

    def _put(self, index: int, out: queue.Queue[object], item: object) -> None:
        while True:
            if self._halted(index):
                raise _Halted
            try:
                out.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _get(self, index: int, inbox: queue.Queue[object]) -> object:
        while True:
            if self._halted(index):
                raise _Halted
            try:
                return inbox.get(timeout=_POLL_S)
            except queue.Empty:
                continue

    def _fail(self, index: int, exc: BaseException, out: queue.Queue[object]) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = exc
            if self._cut is None or index < self._cut:
                self._cut = index
        # The parts after this one finish what they already have, then stop.
        try:
            self._put(index + 1, out, _END)
        except _Halted:
            pass

    def _join(self, threads: list[threading.Thread]) -> None:
        producer, *stages = threads
        for thread in stages:
            thread.join()
        # A producer blocked on its input (a pipe that stays open) cannot be stopped: left behind.
        producer.join(timeout=_ABANDON_S)

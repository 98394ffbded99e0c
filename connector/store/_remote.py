"""A chunk collection of the embedded engine in a writer process of its own, for one sync.

The engine takes every point through its Python binding with the GIL held (building the
engine's point from the payload and vectors, then indexing it): in a sync that spreads its CPU
work over processes, that is the largest share left in the main process. So, while a sync runs
with more than one worker, the main process lends the collection (:meth:`EdgeClient.lend`) to a
process that opens it alone and answers the sync's calls on it (its change-state reads and its
writes) one at a time, over a pipe. The folder's lock stays with the main process; the collection
comes back, flushed, when the run's writes are done, before any delete.
"""

from __future__ import annotations

import queue
import signal
import threading
from contextlib import ExitStack
from multiprocessing.connection import Connection, wait
from typing import Any

from connector._processes import exit_with_parent, process_context
from connector.errors import SinkError
from connector.store.edge import EdgeClient

__all__ = ["RemoteCollection"]

WRITE_PIPES = 2
"""Writes on their way to the writer process at once (see :data:`connector.store._writer`'s
requests in flight)."""
_JOIN_S = 30.0
"""How long closing waits for the writer process to flush and close the collection."""


class _Channel:
    """One pipe to the writer process; one call at a time on it."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()


class RemoteCollection:
    """Calls on one lent collection, answered by the writer process that holds it.

    Reads (a window's point state, which the next window's planning waits on) have a pipe of
    their own, which the process serves first: they never queue behind a run of writes. Writes
    have :data:`WRITE_PIPES` pipes, so that the next write is on its way while the process
    applies one.

    Args:
        client: The main process's client; it lends the collection until :meth:`close`.
        collection: The collection (or its alias).
    """

    def __init__(self, client: EdgeClient, collection: str) -> None:
        self.client = client
        self.name = client.lend(collection)
        context = process_context()
        reads, reads_there = context.Pipe()
        pairs = [context.Pipe() for _ in range(WRITE_PIPES)]
        there = [reads_there, *(theirs for _, theirs in pairs)]
        self._process = context.Process(
            target=serve,
            args=(there, str(client.root.parent)),
            name="connector-writer",
            daemon=True,
        )
        try:
            self._process.start()
        except BaseException:
            client.take_back(self.name)
            raise
        for conn in there:
            conn.close()
        self._reads = _Channel(reads)
        self._writes = [_Channel(ours) for ours, _ in pairs]
        self._idle: queue.Queue[_Channel] = queue.Queue()
        for channel in self._writes:
            self._idle.put(channel)
        self._closed = False

    def call(self, method: str, *args: Any, read: bool = False) -> Any:
        """``EdgeClient.<method>(*args)`` in the writer process; its result.

        Args:
            method: The client's method.
            args: Its arguments.
            read: The call changes nothing: it goes ahead of queued writes.

        Raises:
            SinkError: The call failed there (its message), or the process is gone.
        """
        channel = self._reads if read else self._idle.get()
        try:
            return self._call(channel, method, args)
        finally:
            if not read:
                self._idle.put(channel)

    def _call(self, channel: _Channel, method: str, args: tuple[Any, ...]) -> Any:
        with channel.lock:
            if self._closed:
                raise SinkError(f"the writer process of {self.name!r} is closed")
            try:
                channel.conn.send((method, args))
                ok, value = channel.conn.recv()
            except (EOFError, OSError) as exc:
                raise SinkError(
                    f"the writer process of {self.name!r} stopped "
                    f"(exit code {self._process.exitcode}): {type(exc).__name__}"
                ) from None
        if not ok:
            raise SinkError(value)
        return value

    def close(self) -> None:
        """Stop the writer process once it flushed and closed the collection, and take the
        collection back (also when the process is already gone)."""
        channels = [self._reads, *self._writes]
        with ExitStack() as held:
            for channel in channels:
                held.enter_context(channel.lock)
            if self._closed:
                return
            self._closed = True
            try:
                self._reads.conn.send(None)
            except OSError:
                pass  # already gone: what it acknowledged is in the engine's log
            self._process.join(_JOIN_S)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join()
            for channel in channels:
                channel.conn.close()
            self.client.take_back(self.name)


def serve(conns: list[Connection], path: str) -> None:
    """The writer process: answer calls on the lent collection that come on ``conns`` (the
    first: reads, served first), until told to stop or until the main process is gone (its ends
    of the pipes close); then flush and close."""
    # Ctrl-C reaches the whole process group; the main process stops the run and this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Its pipes end when the main process dies; the watch also covers a stuck engine call.
    exit_with_parent()
    client = EdgeClient(path, lock=False)
    try:
        while True:
            ready = wait(conns)
            conn = next(c for c in conns if c in ready)  # the reads first
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return
            if request is None:
                return
            method, args = request
            try:
                reply: tuple[bool, Any] = (True, getattr(client, method)(*args))
            except Exception as exc:  # its class may not travel back; its message does
                reply = (False, str(exc) or type(exc).__name__)
            conn.send(reply)
    finally:
        client.close()
        for conn in conns:
            conn.close()

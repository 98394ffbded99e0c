"""How a sync starts its helper processes (sparse workers, the embedded store's writer, a
folder's readers)."""

from __future__ import annotations

import multiprocessing
import os
import threading
from typing import Any

__all__ = ["exit_with_parent", "process_context"]

_PRELOAD = ["connector.sparse._worker", "connector.store._remote", "connector.sources._reading"]
"""What a helper process runs: imported once by the fork server, so that each process it forks
starts with them loaded instead of importing them again (the store's client takes a second)."""


def process_context() -> Any:
    """A multiprocessing context that starts processes from a fork server (else spawns them).

    Never a plain fork: the sync runs threads already, and a forked child could inherit a lock
    one of them holds.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Takes effect when the fork server starts (the first helper process of this process).
    context.set_forkserver_preload(_PRELOAD)
    return context


def exit_with_parent() -> None:
    """In a helper process: exit at once when the process that started it is gone.

    A pool worker waits on a queue whose pipe it holds both ends of, so it would never see its
    parent die (kill -9): it, and the fork server and resource tracker it keeps alive, would
    run on as orphans. A daemon thread waits on the parent's sentinel instead.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()

"""Model staging: models wait on the CPU and visit the GPU only while a lease is held."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from connector.gpu.cuda import DeviceMemory

__all__ = ["staged"]


@contextmanager
def staged(move: Callable[[str], None], device: str, memory: DeviceMemory) -> Iterator[None]:
    """Hydrates a model to ``device`` for the block, then stages it back to the CPU.

    Leaving the block by any path moves the model back and empties the device's cache, so the
    next model (or the next process) finds the memory free.

    Args:
        move: Moves the model to a torch device.
        device: Where it runs in the block, e.g. ``cuda:0``.
        memory: The device's memory, emptied afterwards.
    """
    try:
        move(device)
        yield
    finally:
        try:
            move("cpu")
        finally:
            memory.free(device)

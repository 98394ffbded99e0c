"""Model staging: models wait on the CPU and visit the GPU only while a lease is held."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from connector.gpu._cuda import DeviceMemory

__all__ = ["move_module", "staged"]

# Per module: its CPU tensors by name, kept while the module visits a GPU.
_HOMES: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


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


def move_module(module: Any, device: str) -> None:
    """Moves a torch module to ``device``; back on the CPU, without copying anything back.

    The first visit to a GPU keeps the module's CPU tensors (pinned, so later copies to the GPU
    are fast DMA transfers) and gives the module device copies; returning to the CPU points the
    module at the kept tensors again and drops the device copies. Weights do not change during
    inference, so the device copies have nothing to give back.

    Args:
        module: A ``torch.nn.Module``.
        device: ``"cpu"`` or a device such as ``"cuda:0"``.
    """
    import torch

    target = torch.device(device)
    home = _HOMES.get(module)
    tensors = _named_tensors(module)
    if target.type == "cpu":
        if home is None:  # it never left through here (loaded straight onto a GPU, say)
            module.to(target)
            return
        for name, tensor in tensors:
            tensor.data = home[name]
        return
    if home is None or home.keys() != dict(tensors).keys():
        pin = torch.cuda.is_available()
        home = {}
        for name, tensor in tensors:
            cpu = tensor.data.to("cpu")
            home[name] = cpu.pin_memory() if pin else cpu
        _HOMES[module] = home
    for name, tensor in tensors:
        tensor.data = home[name].to(target, non_blocking=True)


def _named_tensors(module: Any) -> list[tuple[str, Any]]:
    return [*module.named_parameters(), *module.named_buffers()]

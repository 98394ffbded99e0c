"""The torch side of GPU use: device memory, caps, and which torch device a probed GPU is.

torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import os
import re
from typing import Protocol

from connector.gpu._probe import DeviceInfo

__all__ = ["CudaMemory", "DeviceMemory", "cuda_device_for", "is_out_of_memory"]


class DeviceMemory(Protocol):
    """The memory of the device a batch runs on, as the adaptive batcher needs it."""

    def total_bytes(self, device: str) -> int:
        """The device's memory."""
        ...

    def set_hard_cap(self, device: str, cap_bytes: int) -> None:
        """Past ``cap_bytes`` this process's allocations on ``device`` fail with out-of-memory."""
        ...

    def reset_peak(self, device: str) -> None:
        """Starts a new peak measurement (called before each batch)."""
        ...

    def peak_bytes(self, device: str) -> int:
        """The most memory this process had allocated on ``device`` since :meth:`reset_peak`."""
        ...

    def free(self, device: str) -> None:
        """Returns cached, unused blocks to the driver (between models, after an OOM)."""
        ...


class CudaMemory:
    """:class:`DeviceMemory` through torch's CUDA caching allocator."""

    def total_bytes(self, device: str) -> int:
        import torch

        return int(torch.cuda.get_device_properties(device).total_memory)

    def set_hard_cap(self, device: str, cap_bytes: int) -> None:
        import torch

        fraction = min(1.0, cap_bytes / self.total_bytes(device))
        torch.cuda.set_per_process_memory_fraction(fraction, device)

    def reset_peak(self, device: str) -> None:
        import torch

        torch.cuda.reset_peak_memory_stats(device)

    def peak_bytes(self, device: str) -> int:
        import torch

        return int(torch.cuda.max_memory_allocated(device))

    def free(self, device: str) -> None:
        import torch

        with torch.cuda.device(device):
            torch.cuda.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's CUDA out-of-memory error."""
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError)


def cuda_device_for(info: DeviceInfo) -> str | None:
    """The torch device (``cuda:N``) of a probed GPU in this process, or ``None``.

    NVML numbers every GPU of the host; torch numbers only those ``CUDA_VISIBLE_DEVICES`` shows,
    possibly in another order, so the two are matched by UUID.
    """
    import torch

    if not torch.cuda.is_available():
        return None
    count = torch.cuda.device_count()
    wanted = _hex(info.uuid)
    seen_uuid = False
    for ordinal in range(count):
        uuid = getattr(torch.cuda.get_device_properties(ordinal), "uuid", None)
        if uuid is None:
            continue
        seen_uuid = True
        if _hex(str(uuid)) == wanted:
            return f"cuda:{ordinal}"
    # Builds whose device properties carry no UUID: NVML's order holds when nothing is hidden.
    if not seen_uuid and "CUDA_VISIBLE_DEVICES" not in os.environ and info.index < count:
        return f"cuda:{info.index}"
    return None


def _hex(uuid: str) -> str:
    """The hex digits of a UUID: NVML writes ``GPU-1a2b...``, torch ``1a2b...``."""
    return re.sub(r"[^0-9a-f]", "", uuid.lower().removeprefix("gpu-"))

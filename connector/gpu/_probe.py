"""What GPUs this host has, read through NVML (``nvidia-ml-py``, imported as ``pynvml``).

No NVML library, no driver, or no device is a normal state: the probe then reports no devices.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["DeviceInfo", "DeviceProbe", "GpuProcess", "NvmlProbe"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process using a GPU."""

    pid: int
    used_bytes: int | None
    """Device memory it holds; ``None`` where the driver does not say."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One GPU as NVML sees it at the moment of the probe."""

    index: int
    """NVML index, as ``nvidia-smi`` numbers the devices; lease ids use it."""
    name: str
    uuid: str
    total_bytes: int
    used_bytes: int
    utilisation_pct: int | None
    """GPU utilisation over the driver's last sample period; ``None`` where not supported."""
    processes: tuple[GpuProcess, ...] = ()

    @property
    def free_bytes(self) -> int:
        return max(0, self.total_bytes - self.used_bytes)


class DeviceProbe(Protocol):
    """Lists the GPUs of this host."""

    def devices(self) -> list[DeviceInfo]:
        """Every device with its memory and users now; empty when there is none (never raises)."""
        ...


class NvmlProbe:
    """A :class:`DeviceProbe` over NVML.

    NVML is initialised once, on the first call; when that fails (no library, no driver) the
    probe remembers it and answers ``[]`` from then on without trying again.

    Args:
        nvml: The NVML binding (default: ``pynvml``); tests pass a stand-in.
    """

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml
        self._ready: bool | None = None
        self._lock = threading.Lock()

    def _init(self) -> bool:
        with self._lock:
            if self._ready is None:
                try:
                    if self._nvml is None:
                        import pynvml

                        self._nvml = pynvml
                    self._nvml.nvmlInit()
                    self._ready = True
                except Exception as exc:  # no library, no driver: a machine without GPUs
                    log.debug("no NVML: %s", type(exc).__name__)
                    self._ready = False
            return self._ready

    def devices(self) -> list[DeviceInfo]:
        if not self._init():
            return []
        nvml = self._nvml
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            log.warning("NVML could not count devices: %s", exc)
            return []
        found = []
        for index in range(count):
            try:
                found.append(self._device(index))
            except nvml.NVMLError as exc:  # a device fallen off the bus is not ours to use
                log.warning("NVML could not read GPU %d: %s", index, exc)
        return found

    def _device(self, index: int) -> DeviceInfo:
        nvml = self._nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        try:
            utilisation: int | None = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except nvml.NVMLError:
            utilisation = None
        try:
            running = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except nvml.NVMLError:
            running = []
        processes = tuple(
            GpuProcess(pid=int(p.pid), used_bytes=_bytes_or_none(p.usedGpuMemory)) for p in running
        )
        return DeviceInfo(
            index=index,
            name=_text(nvml.nvmlDeviceGetName(handle)),
            uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
            total_bytes=int(memory.total),
            used_bytes=int(memory.used),
            utilisation_pct=utilisation,
            processes=processes,
        )


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _bytes_or_none(value: Any) -> int | None:
    # NVML reports "not available" as None (newer bindings) or as a huge sentinel.
    if value is None or not isinstance(value, int) or value < 0 or value >= 1 << 63:
        return None
    return value

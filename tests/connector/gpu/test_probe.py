"""The NVML probe: devices with memory, utilisation and processes; no NVML means no devices."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest

from connector.gpu import DeviceInfo, GpuProcess, NvmlProbe
from tests.fakes import GIB


class NVMLError(Exception):
    pass


class FakeNvml:
    """The few pynvml calls the probe makes, over a made-up host."""

    NVMLError = NVMLError

    def __init__(self, devices: list[dict] | None = None, init_error: bool = False) -> None:
        self.devices = devices or []
        self.init_error = init_error
        self.inits = 0

    def nvmlInit(self) -> None:
        self.inits += 1
        if self.init_error:
            raise NVMLError("Driver Not Loaded")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict:
        device = self.devices[index]
        if device.get("lost"):
            raise NVMLError("GPU is lost")
        return device

    def nvmlDeviceGetName(self, handle: dict):
        return handle["name"]

    def nvmlDeviceGetUUID(self, handle: dict):
        return handle["uuid"]

    def nvmlDeviceGetMemoryInfo(self, handle: dict):
        return SimpleNamespace(total=handle["total"], used=handle["used"], free=0)

    def nvmlDeviceGetUtilizationRates(self, handle: dict):
        if handle.get("util") is None:
            raise NVMLError("Not Supported")
        return SimpleNamespace(gpu=handle["util"], memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: dict):
        return [SimpleNamespace(pid=pid, usedGpuMemory=mem) for pid, mem in handle["procs"]]


def test_devices_with_memory_utilisation_and_processes() -> None:
    nvml = FakeNvml(
        [
            {
                "name": b"NVIDIA H100 80GB HBM3",
                "uuid": b"GPU-aaaa",
                "total": 80 * GIB,
                "used": 2 * GIB,
                "util": 37,
                "procs": [(4242, GIB), (4343, None)],
            },
            {"name": "L4", "uuid": "GPU-bbbb", "total": 24 * GIB, "used": 0, "procs": []},
        ]
    )
    first, second = NvmlProbe(nvml).devices()
    assert first == DeviceInfo(
        index=0,
        name="NVIDIA H100 80GB HBM3",
        uuid="GPU-aaaa",
        total_bytes=80 * GIB,
        used_bytes=2 * GIB,
        utilisation_pct=37,
        processes=(GpuProcess(4242, GIB), GpuProcess(4343, None)),
    )
    assert first.free_bytes == 78 * GIB
    assert (second.index, second.name, second.utilisation_pct, second.processes) == (
        1,
        "L4",
        None,
        (),
    )


def test_no_driver_means_no_devices_and_no_retry() -> None:
    nvml = FakeNvml(init_error=True)
    probe = NvmlProbe(nvml)
    assert probe.devices() == [] and probe.devices() == []
    assert nvml.inits == 1


def test_a_lost_device_is_left_out() -> None:
    healthy = {"name": "A", "uuid": "GPU-1", "total": GIB, "used": 0, "util": 0, "procs": []}
    nvml = FakeNvml([{"lost": True}, healthy])
    assert [d.index for d in NvmlProbe(nvml).devices()] == [1]


def test_this_machine_without_nvml_reports_no_devices() -> None:
    assert importlib.util.find_spec("pynvml") is not None  # nvidia-ml-py is a dependency
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        assert NvmlProbe().devices() == []
    else:
        pytest.skip("this machine has NVML; the gpu tests cover it")


def test_without_cuda_in_torch_no_gpu_is_usable() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("torch sees a CUDA device here; the gpu tests cover the mapping")
    from connector.gpu import cuda_device_for

    info = DeviceInfo(0, "GPU", "GPU-0000", GIB, 0, None)
    assert cuda_device_for(info) is None

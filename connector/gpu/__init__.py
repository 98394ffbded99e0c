"""GPU use: a probe, exclusive leases across processes, VRAM caps, adaptive batches, staging.

Nothing here imports torch or NVML at import time; a machine without a GPU simply has no devices.
"""

from __future__ import annotations

from connector.gpu._batching import GIB, AdaptiveBatcher, BatchOutcome, BatchPolicy, Workload
from connector.gpu._cuda import CudaMemory, DeviceMemory, cuda_device_for, is_out_of_memory
from connector.gpu._executor import DeviceExecutor
from connector.gpu._lease import GpuLease, LeasePool, LeaseRecord, lease_dir, read_leases
from connector.gpu._probe import DeviceInfo, DeviceProbe, GpuProcess, NvmlProbe
from connector.gpu._staging import move_module, staged

__all__ = [
    "GIB",
    "AdaptiveBatcher",
    "BatchOutcome",
    "BatchPolicy",
    "CudaMemory",
    "DeviceExecutor",
    "DeviceInfo",
    "DeviceMemory",
    "DeviceProbe",
    "GpuLease",
    "GpuProcess",
    "LeasePool",
    "LeaseRecord",
    "NvmlProbe",
    "Workload",
    "cuda_device_for",
    "is_out_of_memory",
    "lease_dir",
    "move_module",
    "read_leases",
    "staged",
]

"""GPU use: a probe, exclusive leases across processes, VRAM caps, adaptive batches, staging.

Nothing here imports torch or NVML at import time; a machine without a GPU simply has no devices.
"""

from __future__ import annotations

from connector.gpu.batching import GIB, AdaptiveBatcher, BatchOutcome, BatchPolicy, Workload
from connector.gpu.cuda import CudaMemory, DeviceMemory, cuda_device_for, is_out_of_memory
from connector.gpu.executor import DeviceExecutor
from connector.gpu.lease import GpuLease, LeasePool, LeaseRecord, lease_dir, read_leases
from connector.gpu.probe import DeviceInfo, DeviceProbe, GpuProcess, NvmlProbe
from connector.gpu.staging import move_module, staged

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

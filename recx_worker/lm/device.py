"""Device and dtype selection: CUDA with bf16 when present, else CPU float32."""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from typing import Any

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True, slots=True)
class DeviceChoice:
    device: str
    dtype_name: str

    @property
    def dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype_name)

    def describe(self) -> str:
        if self.device.startswith("cuda"):
            import torch

            return f"{torch.cuda.get_device_name(self.device)} ({self.dtype_name})"
        return f"cpu x{cpu_threads()} ({self.dtype_name})"


def cpu_threads() -> int:
    """Threads for CPU inference: PyTorch's intra-op count where torch is loaded; otherwise
    the same default without importing it (``OMP_NUM_THREADS``, else the physical cores)."""
    if "torch" in sys.modules:
        return int(sys.modules["torch"].get_num_threads())
    configured = os.environ.get("OMP_NUM_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    import psutil

    return psutil.cpu_count(logical=False) or len(os.sched_getaffinity(0)) or 1


@functools.cache
def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (x86 AMX, flag ``amx_bf16``:
    3.4x its float32 matmul rate on the 2-vCPU machine by ``recx bench generate``'s
    calibration, where CTranslate2's int8 gains nothing from it). ``RECX_CPU_BF16=0|1``
    overrides the detection."""
    forced = os.environ.get("RECX_CPU_BF16", "")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split(":", 1)[1].split()
    except OSError:
        pass
    return False


def has_nvidia_driver() -> bool:
    """Whether an NVIDIA driver is present at all (without it CUDA cannot be available, and
    "auto" resolves to the CPU without importing PyTorch)."""
    return any(os.path.exists(p) for p in ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0"))


def select_device(device: str = "auto", dtype: str = "auto") -> DeviceChoice:
    """Resolve ``device``/``dtype`` ("auto" = CUDA+bf16 when available, else CPU+float32).

    ``RECX_DEVICE`` overrides ``device="auto"`` (e.g. ``RECX_DEVICE=cpu`` on a GPU host).
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if device == "auto":
        device = os.environ.get("RECX_DEVICE", "auto")
    if device == "auto" and not has_nvidia_driver():
        device = "cpu"  # no driver, no CUDA: decided without importing torch (seconds)
    if device == "auto" or device.startswith("cuda"):
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    return DeviceChoice(device=device, dtype_name=dtype)


def hardware() -> dict[str, Any]:
    """CPU count, machine type and the GPU name when there is one (for reports)."""
    import platform

    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "machine": platform.machine()}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info

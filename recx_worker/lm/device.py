"""Device and dtype selection: CUDA with bf16 when present, else CPU float32."""

from __future__ import annotations

import os
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
    import torch

    return torch.get_num_threads()


def select_device(device: str = "auto", dtype: str = "auto") -> DeviceChoice:
    """Resolve ``device``/``dtype`` ("auto" = CUDA+bf16 when available, else CPU+float32).

    ``RECX_DEVICE`` overrides ``device="auto"`` (e.g. ``RECX_DEVICE=cpu`` on a GPU host).
    """
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if device == "auto":
        device = os.environ.get("RECX_DEVICE", "auto")
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

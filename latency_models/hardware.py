"""Hardware fingerprint: what a latency figure is only valid for."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform


@functools.cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def fingerprint() -> dict[str, str | int]:
    """CPU model and count, GPU name when present, and the versions that affect latency."""
    import onnxruntime
    import torch

    info: dict[str, str | int] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def fingerprint_id(info: dict | None = None) -> str:
    info = fingerprint() if info is None else info
    return hashlib.sha1(json.dumps(info, sort_keys=True).encode()).hexdigest()[:12]


def device_lock(device: str) -> str:
    """The measurement lock of a torch device (infra.locks): the machine's for the CPU,
    the GPU's own (by UUID) for a CUDA device, so workers on other GPUs need not wait."""
    import torch

    from infra.locks import MACHINE, gpu_lock

    dev = torch.device(device)
    if dev.type != "cuda":
        return MACHINE
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return gpu_lock(str(torch.cuda.get_device_properties(index).uuid))

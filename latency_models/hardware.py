"""Hardware fingerprint: what a latency figure is only valid for."""

from __future__ import annotations

import functools

from nas_agent.fingerprint import cpu_model, onnxruntime_fingerprint
from nas_agent.fingerprint import fingerprint_id as agent_fingerprint_id

__all__ = ["cpu_model", "device_lock", "fingerprint", "fingerprint_id"]


@functools.cache
def fingerprint() -> dict[str, str | int]:
    """CPU model and count, GPU name when present, and the versions that affect latency (an
    agent's torch-free fingerprint, nas_agent.fingerprint, plus torch)."""
    import torch

    info: dict[str, str | int] = dict(onnxruntime_fingerprint()) | {"torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def fingerprint_id(info: dict | None = None) -> str:
    return agent_fingerprint_id(fingerprint() if info is None else info)


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

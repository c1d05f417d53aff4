"""The hardware fingerprint of a machine that measures with ONNX Runtime alone (torch-free): what
a latency figure taken there is valid for. latency_models.hardware adds torch's version (and the
GPU) for the local profilers; an agent's figures are keyed by this one."""

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
def onnxruntime_fingerprint() -> dict[str, str | int]:
    """CPU model and count, machine, and the versions of Python and ONNX Runtime."""
    import onnxruntime

    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
    }


def fingerprint_id(info: dict) -> str:
    """A short, stable id of a fingerprint (sha1 of its sorted JSON)."""
    return hashlib.sha1(json.dumps(info, sort_keys=True).encode()).hexdigest()[:12]

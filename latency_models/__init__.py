"""Latency profilers: measured (ONNX Runtime) and proxies (FLOPs, params), by registry name."""

from latency_models import flops as _flops  # noqa: F401  (registers "flops")
from latency_models import onnxruntime as _onnxruntime  # noqa: F401  (registers "onnxruntime")
from latency_models._base import (
    ENTRY_POINT_GROUP,
    LatencyProfiler,
    LatencyResult,
    create_profiler,
    list_profilers,
    register_profiler,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "LatencyProfiler",
    "LatencyResult",
    "create_profiler",
    "list_profilers",
    "register_profiler",
]

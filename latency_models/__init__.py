"""Latency profilers by registry name: measured (ONNX Runtime, torch; ONNX Runtime on a target
device through measurement agents: remote), proxies (FLOPs, params) and the learned predictor;
other packages add theirs through the ``nas.latency_models`` entry points."""

from latency_models import flops as _flops  # noqa: F401  (registers "flops")
from latency_models import onnxruntime as _onnxruntime  # noqa: F401  (registers "onnxruntime")
from latency_models import predictor as _predictor  # noqa: F401  (registers "predictor")
from latency_models import remote as _remote  # noqa: F401  (registers "remote")
from latency_models import torch_profiler as _torch  # noqa: F401  (registers "torch")
from latency_models._base import (
    ENTRY_POINT_GROUP,
    LatencyProfiler,
    LatencyResult,
    create_profiler,
    list_profilers,
    profiler_key,
    register_profiler,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "LatencyProfiler",
    "LatencyResult",
    "create_profiler",
    "list_profilers",
    "profiler_key",
    "register_profiler",
]

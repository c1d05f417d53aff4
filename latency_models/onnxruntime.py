"""Measured latency on ONNX Runtime: export, warm up, time ``runs`` single calls."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from latency_models._base import LatencyResult, register_profiler
from nas.arch import ArchConfig


@register_profiler("onnxruntime")
class OnnxRuntimeProfiler:
    """ONNX Runtime on CPU (or any execution provider given in ``providers``).

    ``threads=1`` by default: on a small machine two intra-op threads gave a CV of up to 64 %,
    one thread about 1 %.
    """

    name = "onnxruntime"
    unit = "ms"

    def __init__(
        self,
        threads: int = 1,
        batch_size: int = 1,
        warmup: int = 20,
        runs: int = 100,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
    ) -> None:
        if threads < 1 or batch_size < 1 or warmup < 0 or runs < 1:
            raise ValueError("profiler: threads, batch_size and runs must be >= 1, warmup >= 0")
        self.threads, self.batch_size, self.warmup, self.runs = threads, batch_size, warmup, runs
        import onnxruntime as ort

        available = ort.get_available_providers()
        missing = [p for p in providers if p not in available]
        if missing:  # ORT would silently fall back to another provider: refuse instead
            raise ValueError(f"profiler.providers: {missing} not available here; available: {available}")
        self.providers = list(providers)

    def settings(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "batch_size": self.batch_size,
            "warmup": self.warmup,
            "runs": self.runs,
            "providers": self.providers,
        }

    def session(self, onnx_bytes: bytes):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        return ort.InferenceSession(onnx_bytes, options, providers=self.providers)

    def measure(self, arch: ArchConfig, model: Any = None) -> LatencyResult:
        from nas.onnx_io import to_onnx
        from search_spaces.layers import build_model

        model = build_model(arch) if model is None else model
        session = self.session(to_onnx(model, arch.input_shape))
        feed = {
            "images": np.random.default_rng(0).random((self.batch_size, *arch.input_shape), dtype=np.float32)
        }
        for _ in range(self.warmup):
            session.run(None, feed)
        samples = []
        for _ in range(self.runs):
            start = time.perf_counter_ns()
            session.run(None, feed)
            samples.append((time.perf_counter_ns() - start) / 1e6)
        return LatencyResult.from_samples(
            samples, unit="ms", n_warmup=self.warmup, batch_size=self.batch_size
        )

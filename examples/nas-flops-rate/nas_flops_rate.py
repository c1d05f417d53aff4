"""A third-party latency profiler for ``nas``: FLOPs divided by a sustained rate."""

from latency_models import LatencyResult
from latency_models.flops import count_flops
from search_spaces.networks import build_model


class FlopsRateProfiler:
    name = "flops_rate"
    unit = "ms"
    measured = False  # a model, not a measurement: valid on any machine, never cached

    def __init__(self, gflops_per_s: float = 50.0, batch_size: int = 1):
        self.gflops_per_s, self.batch_size = gflops_per_s, batch_size

    def settings(self) -> dict:
        return {"gflops_per_s": self.gflops_per_s, "batch_size": self.batch_size}

    def measure(self, arch, model=None) -> LatencyResult:
        model = build_model(arch) if model is None else model
        ms = count_flops(model, arch.input_shape, self.batch_size) / (self.gflops_per_s * 1e6)
        return LatencyResult(ms, ms, ms, 0.0, unit="ms", batch_size=self.batch_size)

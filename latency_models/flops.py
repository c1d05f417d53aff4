"""Proxies: FLOPs (torch's FlopCounterMode) or parameter count. Cheap, but not latency."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from latency_models._base import LatencyResult, register_profiler
from search_spaces.arch import ArchConfig
from search_spaces.networks import build_model


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# torch counts SDPA only for its CUDA kernels; the CPU kernel has the same cost.
_CUSTOM = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def count_flops(model: torch.nn.Module, input_shape: tuple[int, ...], batch_size: int = 1) -> int:
    """FLOPs of one forward pass (a multiply-add counts 2), as torch's FLOP counter reports."""
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
        model(torch.zeros(batch_size, *input_shape, device=next(model.parameters()).device))
    return counter.get_total_flops()


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_nonzero_params(model: torch.nn.Module) -> int:
    """Parameters that are not exactly zero (sparse layers keep their zeros densely)."""
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


@register_profiler("flops")
class FlopsProfiler:
    """``metric=flops`` gives MFLOPs per forward pass; ``metric=params`` gives M parameters."""

    name = "flops"
    measured = False

    def __init__(self, metric: str = "flops", batch_size: int = 1) -> None:
        if metric not in ("flops", "params"):
            raise ValueError(f"profiler.metric: {metric!r} is not one of ['flops', 'params']")
        self.metric, self.batch_size = metric, batch_size
        self.unit = "MFLOPs" if metric == "flops" else "Mparams"

    def settings(self) -> dict[str, Any]:
        return {"metric": self.metric, "batch_size": self.batch_size}

    def measure(self, arch: ArchConfig, model: Any = None) -> LatencyResult:

        model = build_model(arch) if model is None else model
        if self.metric == "flops":
            value = count_flops(model, arch.input_shape, self.batch_size) / 1e6
        else:
            value = count_params(model) / 1e6
        return LatencyResult(value, value, value, 0.0, unit=self.unit, batch_size=self.batch_size)

"""A stand-alone training's forward + backward captured once as a CUDA graph and replayed
(``retrain.cuda_graphs``), as supernet training does for its members (``nas.member_graphs``): a
small model's step on a GPU costs the launching of its hundreds of kernels from Python, not
running them, and several trainings sharing one GPU then fight for the host's cores."""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch import nn


class _Autocast(nn.Module):
    """The model under bf16 autocast (without autocast's cache, which a graph must not hold) with
    float logits: what the graph captures."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            return self.model(x).float()


class TrainingForward:
    """``forward(x)``: the model's training-mode logits under bf16 autocast on CUDA. With
    ``graphs``, the first call captures forward + backward (``torch.cuda.make_graphed_callables``,
    on that batch's shape; its warm-up runs do not touch gradients, BatchNorm statistics see that
    batch a few more times) and later calls replay it; a model that cannot be captured (a host
    sync in its forward, ...) runs eagerly, said once on stderr. The optimizer step, loss and
    augmentation stay eager (a few kernels each). Evaluation (``model.eval()``) always runs the
    eager forward."""

    def __init__(self, model: nn.Module, device: torch.device, graphs: bool) -> None:
        self.model, self.device = model, device
        self.graphs = graphs and device.type == "cuda"
        self._graphed: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._wrapped = _Autocast(model) if device.type == "cuda" else None

    @property
    def graphed(self) -> bool:
        return self._graphed is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.graphs and self._graphed is None:
            self.graphs = False  # one attempt
            try:
                self._graphed = torch.cuda.make_graphed_callables(
                    self._wrapped, (x,), allow_unused_input=True
                )
            except Exception as e:  # noqa: BLE001 - any capture failure: train eagerly instead
                torch.cuda.synchronize(self.device)
                print(
                    f"CUDA graph capture failed ({type(e).__name__}: {e}); training eagerly", file=sys.stderr
                )
        if self._graphed is not None:
            return self._graphed(x)
        if self._wrapped is not None:
            return self._wrapped(x)
        return self.model(x)

"""Activations of the spaces: GELU, ReLU and top-k ReLU (activation sparsity)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TopKReLU(nn.Module):
    """ReLU that keeps only the ``fraction`` largest activations of each token or pixel, along
    ``dim`` (top-k activation sparsity, as in "The Lazy Neuron Phenomenon", Li et al. 2023)."""

    def __init__(self, fraction: float, features: int, dim: int = -1) -> None:
        super().__init__()
        self.k = max(1, round(features * fraction))  # a constant, so the ONNX graph is static
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        threshold = x.topk(self.k, dim=self.dim).values.narrow(self.dim, self.k - 1, 1)  # k-th largest
        return F.relu(x) * (x >= threshold)


def make_activation(name: str, features: int, dim: int = -1) -> nn.Module:
    """The activation named in an architecture (one of ``search_spaces.arch.ACTIVATIONS``)."""
    if name.startswith("topk"):
        return TopKReLU(int(name[4:]) / 100, features, dim)
    return {"gelu": nn.GELU, "relu": nn.ReLU}[name]()

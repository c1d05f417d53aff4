"""Sparse pairs: two layers that widen to a hidden width and narrow back, sharing one weight
sparsity pattern (SparseLinear / SparseConv2d, as in DASS; the patterns are in
``search_spaces.sparse``).

Shapes: B batch, N tokens, C channels.
"""

from __future__ import annotations

import torch
from torch import nn

from search_spaces.arch import kept
from search_spaces.ops.activation import make_activation


class SparsePair(nn.Module):
    """Two layers whose weights carry one sparsity pattern (SparseLinear / SparseConv2d pairs):
    ``fc1`` widens ``dim`` to ``hidden`` channels, ``fc2`` narrows back. Under the structured
    pattern whole hidden channels are removed, so ``fc1``/``fc2`` hold ``kept`` of them; the
    supernet slices ``hidden`` and applies the pattern (search_spaces.sparse.sparsify_pair).
    """

    def __init__(self, dim: int, hidden: int, pattern: str, level: float) -> None:
        super().__init__()
        self.dim, self.hidden, self.pattern, self.level = dim, hidden, pattern, level
        self.kept = kept(hidden, level) if pattern == "structured" else hidden


class Mlp(SparsePair):
    """Transformer MLP on tokens: (B, N, dim) -> (B, N, dim)."""

    def __init__(
        self, dim: int, hidden: int, activation: str, pattern: str = "dense", level: float = 0.0
    ) -> None:
        super().__init__(dim, hidden, pattern, level)
        self.fc1 = nn.Linear(dim, self.kept)
        self.act = make_activation(activation, self.kept)
        self.fc2 = nn.Linear(self.kept, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvMlp(SparsePair):
    """Fused-MBConv body: 3x3 conv to the hidden channels, activation, 1x1 conv back."""

    def __init__(self, dim: int, hidden: int, activation: str, pattern: str, level: float) -> None:
        super().__init__(dim, hidden, pattern, level)
        self.fc1 = nn.Conv2d(dim, self.kept, 3, padding=1)
        self.act = make_activation(activation, self.kept, dim=1)
        self.fc2 = nn.Conv2d(self.kept, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return self.fc2(self.act(self.fc1(x)))

"""Residual blocks the networks are stacked from: a transformer block, a conv block, and a
residual spatial reduction.

Shapes: B batch, N tokens, C channels, H x W a feature map.
"""

from __future__ import annotations

import torch
from torch import nn

from search_spaces.arch import ConvBlockConfig, LayerConfig, hidden_width
from search_spaces.ops.attention import token_mixer
from search_spaces.ops.mlp import ConvMlp, Mlp


class Block(nn.Module):
    """Pre-norm transformer block on (B, N, dim) tokens of a grid x grid map."""

    def __init__(self, dim: int, grid: int, head_dim: int, activation: str, layer: LayerConfig) -> None:
        super().__init__()
        self.has_mixer = layer.attention != "none"  # "none": the attention sublayer is skipped
        if self.has_mixer:
            self.norm1 = nn.LayerNorm(dim)
            self.attn = token_mixer(layer.attention, dim, layer.num_heads, head_dim, grid)
        self.norm2 = nn.LayerNorm(dim)
        hidden = hidden_width(dim, layer.mlp_ratio)
        self.mlp = Mlp(dim, hidden, activation, layer.mlp_pattern, layer.mlp_sparsity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_mixer:
            x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ConvBlock(nn.Module):
    """Pre-norm residual conv block; GroupNorm(1) normalises any channel slice (no batch stats)."""

    def __init__(self, dim: int, activation: str, block: ConvBlockConfig) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, dim)
        hidden = hidden_width(dim, block.expansion)
        self.mlp = ConvMlp(dim, hidden, activation, block.conv_pattern, block.conv_sparsity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


class Downsample(nn.Module):
    """Residual spatial reduction (ViT-ResNAS): stride-2 3x3 conv + norm, plus a shortcut of
    2x2 average pooling and a 1x1 conv to the new width. (B, C, H, W) -> (B, C', ceil(H/2), ...)."""

    def __init__(self, in_width: int, out_width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_width, out_width, 3, stride=2, padding=1)
        self.norm = nn.GroupNorm(1, out_width)
        self.pool = nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False)
        self.shortcut = nn.Conv2d(in_width, out_width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x)) + self.shortcut(self.pool(x))

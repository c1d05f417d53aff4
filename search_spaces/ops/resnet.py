"""ResNet-style ops: dense 3x3 convs with BatchNorm and ReLU, the layers ONNX Runtime's CPU kernels
run best (each conv + BatchNorm + ReLU becomes one fused conv in inference). Used by the hybrid
family's residual stages and deep stem (resnet10t's), and by the vit family's conv stem
(EfficientFormer, ViT-ResNAS).

BatchNorm keeps running statistics, which a weight-sharing supernet cannot share between
members: ``search_spaces.supernet`` recomputes them for each member it runs in eval mode or
extracts (``Supernet.set_calibration``).

Shapes: B batch, C channels, H x W a feature map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(in_chs: int, out_chs: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """3x3 conv (no bias: BatchNorm follows), BatchNorm, and ReLU unless ``relu=False``."""
    layers = [nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out_chs)]
    return nn.Sequential(*layers, *([nn.ReLU()] if relu else []))


class BasicBlock(nn.Module):
    """ResNet basic block: relu(x + bn2(conv2(relu(bn1(conv1(x)))))), ``hidden`` channels
    between its convs. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(dim, hidden)
        self.conv2 = conv_bn(hidden, dim, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(self.conv1(x)))


class ResDownsample(nn.Module):
    """ResNet's strided first block of a stage (timm's ``avg_down``, as in resnet10t): two 3x3
    convs, the first of stride 2, plus a shortcut of 2x2 average pooling, 1x1 conv and BatchNorm.
    (B, C, H, W) -> (B, C', ceil(H/2), ceil(W/2))."""

    def __init__(self, in_width: int, out_width: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(in_width, out_width, stride=2)
        self.conv2 = conv_bn(out_width, out_width, relu=False)
        self.pool = nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False)
        self.proj = nn.Conv2d(in_width, out_width, 1, bias=False)
        self.proj_bn = nn.BatchNorm2d(out_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.proj_bn(self.proj(self.pool(x))))


class DeepStem(nn.Module):
    """resnet10t's tiered deep stem: 3x3 convs to ``3 * width / 8``, ``width / 2`` and ``width``
    channels, the first of stride 2 (24, 32, 64 for width 64), then ``halvings - 1`` more stride-2
    convs at ``width`` for large inputs. (B, C, H, W) -> (B, width, H / 2**halvings, ...)."""

    def __init__(self, in_chs: int, width: int, halvings: int) -> None:
        super().__init__()
        first, second = max(1, 3 * width // 8), max(1, width // 2)
        self.convs = nn.Sequential(
            conv_bn(in_chs, first, stride=2),
            conv_bn(first, second),
            conv_bn(second, width),
            *(conv_bn(width, width, stride=2) for _ in range(halvings - 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class ConvStem(nn.Module):
    """Two stride-2 3x3 convs with BatchNorm and ReLU, to ``dim / 2`` and ``dim`` channels
    (EfficientFormer's stem): a vit's patch embedding then covers the remaining factor.
    (B, C, H, W) -> (B, dim, H / 4, W / 4)."""

    def __init__(self, in_chs: int, dim: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(conv_bn(in_chs, dim // 2, stride=2), conv_bn(dim // 2, dim, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)

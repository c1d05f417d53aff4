"""Static networks of the architecture families: plain PyTorch, what ``Supernet.extract`` returns
and ONNX sees. Each network registers for its family (``@register_network("vit")``), so
``static_model(arch)`` is ``NETWORKS[arch.family](arch)``.

Shapes: B batch, N tokens, D embed_dim (or a stage's width), C channels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.arch import CONV_STEM_STRIDE, FAMILIES, Arch, ArchConfig, ArchError, HybridArchConfig
from search_spaces.ops import BasicBlock, Block, ConvBlock, ConvStem, DeepStem, Downsample, ResDownsample
from search_spaces.shapes import hidden_width, stem_strides

# family tag -> network class taking the architecture, filled by @register_network
NETWORKS: dict[str, Callable[[Arch], nn.Module]] = {}


def register_network(family: str):
    """Register the static network class of architecture family ``family``."""
    if family not in FAMILIES:
        raise ValueError(f"no architecture family {family!r}; known: {', '.join(FAMILIES)}")

    def register(network):
        NETWORKS[family] = network
        return network

    return register


@register_network("vit")
class VisionTransformer(nn.Module):
    """Input: images in [0, 1], (B, C, H, W). Normalisation is part of the model."""

    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        self.arch = arch
        dim, p = arch.embed_dim, arch.patch_size
        self.register_buffer("mean", torch.zeros(arch.in_channels, 1, 1))
        self.register_buffer("std", torch.ones(arch.in_channels, 1, 1))
        if arch.stem == "conv":  # two stride-2 convs, then patches of the remaining factor
            self.conv_stem = ConvStem(arch.in_channels, dim)
            self.patch_embed = nn.Conv2d(dim, dim, p // CONV_STEM_STRIDE, stride=p // CONV_STEM_STRIDE)
        else:
            self.patch_embed = nn.Conv2d(arch.in_channels, dim, kernel_size=p, stride=p)
        self.pos_embed = nn.Parameter(torch.zeros(1, arch.num_tokens, dim))
        grid = arch.image_size // p
        self.blocks = nn.ModuleList(
            Block(dim, grid, arch.head_dim, arch.activation, layer) for layer in arch.layers
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, arch.num_classes)

    def embed(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, N, D)
        x = (images - self.mean) / self.std
        if hasattr(self, "conv_stem"):
            x = self.conv_stem(x)
        return self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed

    def classify(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, D) -> (B, num_classes)
        return self.head(self.norm(x).mean(dim=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed(images)
        for block in self.blocks:
            x = block(x)
        return self.classify(x)


class Stage(nn.Module):
    """One resolution of a hybrid: (downsample), residual blocks, conv blocks, then attention
    blocks on its tokens."""

    def __init__(self, arch: HybridArchConfig, index: int) -> None:
        super().__init__()
        stage, width = arch.stages[index], arch.stages[index].width
        if index > 0:
            kind = ResDownsample if stage.downsample == "res" else Downsample
            self.downsample = kind(arch.stages[index - 1].width, width)
        self.res_blocks = nn.ModuleList(
            BasicBlock(width, max(1, hidden_width(width, b.ratio))) for b in stage.res_blocks
        )
        self.conv_blocks = nn.ModuleList(ConvBlock(width, arch.activation, b) for b in stage.conv_blocks)
        grid = arch.resolutions()[index]
        self.attention_blocks = nn.ModuleList(
            Block(width, grid, arch.head_dim, arch.activation, layer) for layer in stage.attention_blocks
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C', H', W')
        if hasattr(self, "downsample"):
            x = self.downsample(x)
        for block in self.res_blocks:
            x = block(x)
        for block in self.conv_blocks:
            x = block(x)
        if len(self.attention_blocks):
            B, C, H, W = x.shape
            tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
            for block in self.attention_blocks:
                tokens = block(tokens)
            x = tokens.transpose(1, 2).reshape(B, C, H, W)
        return x


@register_network("hybrid")
class HybridNet(nn.Module):
    """Conv stem (``stem_strides`` stride-2 convs, or resnet10t's deep stem; a max pool after it
    with ``stem_pool``) -> stages -> global average pool -> LayerNorm -> linear head. Input:
    images in [0, 1], (B, C, H, W); normalisation is part of the model."""

    def __init__(self, arch: HybridArchConfig) -> None:
        super().__init__()
        self.arch = arch
        self.register_buffer("mean", torch.zeros(arch.in_channels, 1, 1))
        self.register_buffer("std", torch.ones(arch.in_channels, 1, 1))
        width, halvings = arch.stages[0].width, stem_strides(arch.image_size)
        if arch.stem == "deep":
            self.deep_stem = DeepStem(arch.in_channels, width, halvings)
        else:
            self.stem = nn.Conv2d(arch.in_channels, width, 3, stride=2, padding=1)
            self.stem_norm = nn.GroupNorm(1, width)
            self.stem_more = nn.Sequential(  # further halvings for large inputs (none at 28-32 px)
                *(
                    nn.Sequential(
                        nn.Conv2d(width, width, 3, stride=2, padding=1), nn.GroupNorm(1, width), nn.ReLU()
                    )
                    for _ in range(halvings - 1)
                )
            )
        self.stem_pool = nn.MaxPool2d(3, stride=2, padding=1) if arch.stem_pool else nn.Identity()
        self.stages = nn.ModuleList(Stage(arch, i) for i in range(len(arch.stages)))
        self.norm = nn.LayerNorm(arch.stages[-1].width)
        self.head = nn.Linear(arch.stages[-1].width, arch.num_classes)

    def embed(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C0, side, side)
        x = (images - self.mean) / self.std
        x = (
            self.deep_stem(x)
            if hasattr(self, "deep_stem")
            else self.stem_more(F.relu(self.stem_norm(self.stem(x))))
        )
        return self.stem_pool(x)

    def classify(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.head(self.norm(x.mean(dim=(2, 3))))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed(images)
        for stage in self.stages:
            x = stage(x)
        return self.classify(x)


def static_model(arch: Arch) -> nn.Module:
    """The static network of ``arch``'s family (uninitialised weights)."""
    if arch.family not in NETWORKS:
        raise ArchError(f"no static network for architecture family {arch.family!r}")
    return NETWORKS[arch.family](arch)


def build_model(arch: Arch) -> nn.Module:
    """A freshly initialised standalone network for ``arch`` (latency does not need weights)."""
    model = static_model(arch)
    init_weights(model)
    return model


def init_weights(model: nn.Module) -> None:
    """Truncated-normal weights and position tables (std 0.02), zero biases; norms keep theirs,
    except the last BatchNorm of each residual block, zeroed so that the block starts as its
    shortcut (timm's ``zero_init_last``, as once-for-all does): deep residual stacks in a shared
    supernet then start stable."""
    for name, param in model.named_parameters():
        if name.endswith("pos_embed") or (param.dim() > 1 and "norm" not in name):
            nn.init.trunc_normal_(param, std=0.02)
        elif name.endswith("bias"):
            nn.init.zeros_(param)
    for module in model.modules():
        if isinstance(module, (BasicBlock, ResDownsample)):
            nn.init.zeros_(module.conv2[1].weight)

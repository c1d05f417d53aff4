"""An architecture as a sequence of blocks, each measurable on its own (nn-Meter's kernels).

A ``BlockSpec`` names one block by what changes its latency and nothing else (no weights, no
sparsity that runs densely): a token mixer, an MLP, a conv block, a stem, a head. Many
architectures share blocks, so a space of millions of members has a few hundred distinct ones;
the predictor measures each once (a lookup table) and learns how they add up.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from search_spaces.arch import (
    Arch,
    ArchConfig,
    ConvBlockConfig,
    HybridArchConfig,
    LayerConfig,
    StageConfig,
    hidden_width,
    kept,
    pattern_n_m,
)
from search_spaces.networks import HybridNet, VisionTransformer, init_weights
from search_spaces.ops import BasicBlock, ConvMlp, Downsample, Mlp, ResDownsample, token_mixer

# Kinds of block, and the group each one's figure is summed into (a feature of the predictor).
GROUPS = {
    "vit_stem": "ends",
    "vit_head": "ends",
    "hybrid_stem": "ends",
    "hybrid_head": "ends",
    "downsample": "ends",
    "res_down": "ends",
    "mixer": "mixer",
    "mlp": "mlp",
    "conv": "conv",
    "res": "conv",
}


@dataclass(frozen=True)
class BlockSpec:
    kind: str  # one of GROUPS
    input_shape: tuple[int, ...]  # without the batch axis
    options: tuple[tuple[str, Any], ...]  # sorted (name, value) pairs

    @classmethod
    def of(cls, kind: str, input_shape: tuple[int, ...], **options: Any) -> BlockSpec:
        return cls(kind, tuple(input_shape), tuple(sorted(options.items())))

    def key(self) -> str:
        return json.dumps([self.kind, list(self.input_shape), dict(self.options)], sort_keys=True)

    def build(self) -> nn.Module:
        """A freshly initialised module taking a (B, *input_shape) tensor."""

        module = _BUILDERS[self.kind](self.input_shape, **dict(self.options))
        init_weights(module)
        return module.eval()


def _mlp_options(dim: int, ratio: float, pattern: str, level: float) -> dict[str, Any]:
    """Hidden width after structured pruning; N:M kept apart (kernels may exist for it); other
    patterns keep zeros in dense weights, which run as dense."""
    hidden = hidden_width(dim, ratio)
    if pattern == "structured":
        return {"hidden": kept(hidden, level), "pattern": "dense"}
    return {"hidden": hidden, "pattern": pattern if pattern_n_m(pattern) else "dense"}


def _layer_blocks(layer: LayerConfig, dim: int, grid: int, head_dim: int, activation: str) -> list[BlockSpec]:
    shape = (grid * grid, dim)
    blocks = []
    if layer.attention != "none":
        heads = 0 if layer.attention == "pool" else layer.num_heads  # pooling has no heads: one entry
        blocks.append(
            BlockSpec.of("mixer", shape, grid=grid, head_dim=head_dim, heads=heads, attention=layer.attention)
        )
    options = _mlp_options(dim, layer.mlp_ratio, layer.mlp_pattern, layer.mlp_sparsity)
    blocks.append(BlockSpec.of("mlp", shape, activation=activation, **options))
    return blocks


# family tag -> the blocks an architecture of that family runs, filled by @decomposes
DECOMPOSERS: dict[str, Callable[[Arch], list[BlockSpec]]] = {}


def decomposes(family: str):
    """Register how architectures of ``family`` (an ``Arch`` family tag) split into blocks."""

    def register(function):
        DECOMPOSERS[family] = function
        return function

    return register


def decompose(arch: Arch) -> list[BlockSpec]:
    """The blocks ``arch`` runs, in order."""
    if arch.family not in DECOMPOSERS:
        raise ValueError(f"the latency predictor cannot split {arch.family!r} architectures into blocks")
    return DECOMPOSERS[arch.family](arch)


@decomposes("vit")
def _decompose_vit(arch: ArchConfig) -> list[BlockSpec]:
    dim, grid = arch.embed_dim, arch.image_size // arch.patch_size
    stem = {"stem": arch.stem} if arch.stem != "patch" else {}  # (the keys of before otherwise)
    blocks = [BlockSpec.of("vit_stem", arch.input_shape, patch_size=arch.patch_size, dim=dim, **stem)]
    for layer in arch.layers:
        blocks += _layer_blocks(layer, dim, grid, arch.head_dim, arch.activation)
    blocks.append(BlockSpec.of("vit_head", (grid * grid, dim), classes=arch.num_classes))
    return blocks


@decomposes("hybrid")
def _decompose_hybrid(arch: HybridArchConfig) -> list[BlockSpec]:
    first = arch.stages[0].width
    stem = ({"stem": arch.stem} if arch.stem != "conv" else {}) | ({"pool": True} if arch.stem_pool else {})
    blocks = [BlockSpec.of("hybrid_stem", arch.input_shape, width=first, **stem)]
    sides = arch.resolutions()
    for i, stage in enumerate(arch.stages):
        side, width = sides[i], stage.width
        if i > 0:
            prev = arch.stages[i - 1].width
            kind = "res_down" if stage.downsample == "res" else "downsample"
            blocks.append(BlockSpec.of(kind, (prev, sides[i - 1], sides[i - 1]), width=width))
        for b in stage.res_blocks:
            hidden = max(1, hidden_width(width, b.ratio))
            blocks.append(BlockSpec.of("res", (width, side, side), hidden=hidden))
        for b in stage.conv_blocks:
            options = _mlp_options(width, b.expansion, b.conv_pattern, b.conv_sparsity)
            blocks.append(BlockSpec.of("conv", (width, side, side), activation=arch.activation, **options))
        for layer in stage.attention_blocks:
            blocks += _layer_blocks(layer, width, side, arch.head_dim, arch.activation)
    last = arch.stages[-1].width
    blocks.append(BlockSpec.of("hybrid_head", (last, sides[-1], sides[-1]), classes=arch.num_classes))
    return blocks


# -- building one block ------------------------------------------------------------------------


class Residual(nn.Module):
    """x + body(norm(x)): a transformer sublayer or a conv block."""

    def __init__(self, norm: nn.Module, body: nn.Module) -> None:
        super().__init__()
        self.norm, self.body = norm, body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(self.norm(x))


class _Call(nn.Module):
    """One method of a network (its ``embed`` or ``classify``), as a module."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(x)


def _mixer(shape, grid: int, head_dim: int, heads: int, attention: str) -> nn.Module:

    dim = shape[1]
    return Residual(nn.LayerNorm(dim), token_mixer(attention, dim, heads, head_dim, grid))


def _mlp(shape, hidden: int, activation: str, pattern: str) -> nn.Module:

    dim = shape[1]
    level = 1 - pattern_n_m(pattern)[0] / pattern_n_m(pattern)[1] if pattern != "dense" else 0.0
    return Residual(nn.LayerNorm(dim), Mlp(dim, hidden, activation, pattern, level))


def _conv(shape, hidden: int, activation: str, pattern: str) -> nn.Module:

    dim = shape[0]
    level = 1 - pattern_n_m(pattern)[0] / pattern_n_m(pattern)[1] if pattern != "dense" else 0.0
    return Residual(nn.GroupNorm(1, dim), ConvMlp(dim, hidden, activation, pattern, level))


def _vit(shape, patch_size: int, dim: int, classes: int = 1, stem: str = "patch") -> nn.Module:

    channels, size = shape[0], shape[1]
    layer = LayerConfig(num_heads=1, mlp_ratio=1.0, attention="none")
    arch = ArchConfig(size, channels, classes, patch_size, dim, 1, "relu", (layer,), stem=stem)
    return VisionTransformer(arch)


def _vit_stem(shape, patch_size: int, dim: int, stem: str = "patch") -> nn.Module:
    return _Call(_vit(shape, patch_size, dim, stem=stem), "embed")


def _vit_head(shape, classes: int) -> nn.Module:
    grid = round(shape[0] ** 0.5)
    return _Call(_vit((1, grid, grid), 1, shape[1], classes), "classify")


def _hybrid(shape, width: int, classes: int = 1, stem: str = "conv", pool: bool = False) -> nn.Module:

    stage = StageConfig(width, conv_blocks=(ConvBlockConfig(expansion=1.0),))
    arch = HybridArchConfig(shape[1], shape[0], classes, 1, "relu", (stage,), stem=stem, stem_pool=pool)
    return HybridNet(arch)


def _hybrid_stem(shape, width: int, stem: str = "conv", pool: bool = False) -> nn.Module:
    return _Call(_hybrid(shape, width, stem=stem, pool=pool), "embed")


def _hybrid_head(shape, classes: int) -> nn.Module:
    return _Call(_hybrid((1, shape[1] * 2, shape[2] * 2), shape[0], classes), "classify")


def _downsample(shape, width: int) -> nn.Module:

    return Downsample(shape[0], width)


def _res_down(shape, width: int) -> nn.Module:
    return ResDownsample(shape[0], width)


def _res(shape, hidden: int) -> nn.Module:
    return BasicBlock(shape[0], hidden)


_BUILDERS = {
    "vit_stem": _vit_stem,
    "vit_head": _vit_head,
    "hybrid_stem": _hybrid_stem,
    "hybrid_head": _hybrid_head,
    "downsample": _downsample,
    "res_down": _res_down,
    "mixer": _mixer,
    "mlp": _mlp,
    "conv": _conv,
    "res": _res,
}

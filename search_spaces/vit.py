"""Vision-transformer space: patch size, stem, width, depth and per-layer heads/MLP/attention.

Conditional by construction: depth is chosen first and only the active layers are asked about;
the stem is asked where more than one fits the patch size (the conv stem needs patches of a
multiple of 4).
Attention heads have a fixed width (``head_dim``, as in AutoFormer), so every heads/width
combination is a valid network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from search_spaces.arch import ACTIVATIONS, ATTENTIONS, CONV_STEM_STRIDE, VIT_STEMS, ArchConfig, LayerConfig
from search_spaces.base import (
    SearchSpace,
    SpaceError,
    Sparsity,
    Suggester,
    check_choices,
    check_range,
    choose,
    choose_int,
)
from search_spaces.networks import static_model
from search_spaces.supernet import VitSupernet

__all__ = ["SpaceError", "VitSpace"]


class VitSpace(SearchSpace):
    def __init__(
        self,
        *,
        name: str,
        image_size: int,
        in_channels: int,
        num_classes: int,
        patch_size: Sequence[int],
        embed_dim: Sequence[int],
        depth: Sequence[int],
        head_dim: int,
        num_heads: Sequence[int],
        mlp_ratio: Sequence[float],
        attention: Sequence[str],
        activation: Sequence[str],
        mlp_pattern: Sequence[str] = ("dense",),
        mlp_sparsity: Sequence[float] = (0.5, 0.75, 0.9),
        min_tokens: int = 1,
        max_tokens: int | None = None,
        stem: Sequence[str] = ("patch",),
    ) -> None:
        self.name = name
        self.stem = sorted(check_choices("stem", stem, VIT_STEMS), key=VIT_STEMS.index)
        self.image_size, self.in_channels, self.num_classes = image_size, in_channels, num_classes
        # The patch sizes that fit the data: dividing the image size, with a token count within
        # [min_tokens, max_tokens]; one space serves 28, 32, 64 or 224 px (nas spaces shows which).
        self.patch_size_choices = sorted(check_choices("patch_size", patch_size), reverse=True)
        for value, key in ((min_tokens, "min_tokens"), (max_tokens, "max_tokens")):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise SpaceError(f"space.{key}: expected a positive int, got {value!r}")
        unfit = {}
        for p in self.patch_size_choices:
            if not isinstance(p, int) or p < 1 or image_size % p:
                unfit[p] = "does not divide"
            elif not min_tokens <= (image_size // p) ** 2 <= (max_tokens or image_size**2):
                unfit[p] = f"gives {(image_size // p) ** 2} tokens, not {min_tokens}..{max_tokens}"
            elif not self.stems_for(p):
                unfit[p] = f"is not a multiple of {CONV_STEM_STRIDE} (the conv stem's stride)"
        # Every choice list is kept cheapest first (see search_spaces.base).
        self.patch_size = [p for p in self.patch_size_choices if p not in unfit]
        if not self.patch_size:
            why = "; ".join(f"{p} {reason}" for p, reason in unfit.items())
            raise SpaceError(
                f"space.patch_size: no choice fits the dataset's image size {image_size} ({why})"
            )
        self.embed_dim = sorted(int(v) for v in check_choices("embed_dim", embed_dim))
        if "conv" in self.stem and any(d % 2 for d in self.embed_dim):
            raise SpaceError(f"space.embed_dim: the conv stem needs even widths, got {self.embed_dim}")
        self.min_depth, self.max_depth = check_range("depth", depth)
        if not isinstance(head_dim, int) or head_dim < 1:
            raise SpaceError(f"space.head_dim: expected a positive int, got {head_dim!r}")
        self.head_dim = head_dim
        self.num_heads = sorted(int(v) for v in check_choices("num_heads", num_heads))
        self.mlp_ratio = sorted(float(v) for v in check_choices("mlp_ratio", mlp_ratio))
        self.attention = sorted(check_choices("attention", attention, ATTENTIONS), key=ATTENTIONS.index)
        self.activation = sorted(check_choices("activation", activation, ACTIVATIONS), key=ACTIVATIONS.index)
        self.mlp = Sparsity("mlp", mlp_pattern, mlp_sparsity)
        widths = set(self.embed_dim) | {int(d * r) for d in self.embed_dim for r in self.mlp_ratio}
        self.mlp.check_widths(widths, "embed_dim x mlp_ratio")

    def stems_for(self, patch_size: int) -> list[str]:
        """The space's stems that fit ``patch_size``, cheapest first."""
        return [st for st in self.stem if st == "patch" or patch_size % CONV_STEM_STRIDE == 0]

    def build(self, s: Suggester) -> ArchConfig:
        patch_size = choose(s, "patch_size", self.patch_size)
        stem = choose(s, "stem", self.stems_for(patch_size))
        embed_dim = choose(s, "embed_dim", self.embed_dim)
        activation = choose(s, "activation", self.activation)
        depth = choose_int(s, "depth", self.min_depth, self.max_depth)
        layers = tuple(
            LayerConfig(
                num_heads=choose(s, f"layer{i}.num_heads", self.num_heads),
                mlp_ratio=choose(s, f"layer{i}.mlp_ratio", self.mlp_ratio),
                attention=choose(s, f"layer{i}.attention", self.attention),
                **self.mlp.choose(s, f"layer{i}"),
            )
            for i in range(depth)
        )
        return ArchConfig(
            image_size=self.image_size,
            in_channels=self.in_channels,
            num_classes=self.num_classes,
            patch_size=patch_size,
            embed_dim=embed_dim,
            head_dim=self.head_dim,
            activation=activation,
            layers=layers,
            space=self.name,
            stem=stem,
        )

    def make_supernet(self):

        return VitSupernet.from_space(self)

    def width_depth_extremes(self) -> tuple[ArchConfig, ArchConfig]:
        """The width-vs-depth range at comparable size: the widest member at the least depth,
        and the narrowest embed_dim at the most depth with the per-layer heads and MLP ratio
        that bring its parameter count closest to the wide one's."""
        wide = self.largest()
        wide = dataclasses.replace(wide, layers=wide.layers[: self.min_depth])
        deep_members = [
            dataclasses.replace(
                wide,
                embed_dim=self.embed_dim[0],
                layers=(dataclasses.replace(wide.layers[0], num_heads=h, mlp_ratio=r),) * self.max_depth,
            )
            for h in self.num_heads
            for r in self.mlp_ratio
        ]
        target = _param_count(wide)
        return wide, min(deep_members, key=lambda arch: abs(_param_count(arch) - target))

    def axes(self) -> dict[str, str]:
        axes = {
            "patch_size": str(self.patch_size)
            + (
                f" (of {self.patch_size_choices} at {self.image_size} px)"
                if self.patch_size != self.patch_size_choices
                else ""
            ),
            "stem": str(self.stem)
            + (f" (conv: patches of {CONV_STEM_STRIDE}k)" if len(self.stem) > 1 else ""),
            "embed_dim": str(self.embed_dim),
            "depth": f"{self.min_depth}..{self.max_depth}",
            "layer<i>.num_heads": f"{self.num_heads} (head_dim {self.head_dim})",
            "layer<i>.mlp_ratio": str(self.mlp_ratio),
            "layer<i>.attention": str(self.attention),
            "activation": str(self.activation),
        } | self.mlp.axes("layer<i>")
        wide, deep = self.width_depth_extremes()
        axes["width vs depth"] = (
            f"{wide.summary()}: {_param_count(wide):,} params ... "
            f"{deep.summary()}: {_param_count(deep):,} params"
        )
        return axes

    def size(self) -> int:
        per_layer = len(self.num_heads) * len(self.mlp_ratio) * len(self.attention) * self.mlp.options()
        fixed = (
            sum(len(self.stems_for(p)) for p in self.patch_size) * len(self.embed_dim) * len(self.activation)
        )
        return fixed * sum(per_layer**d for d in range(self.min_depth, self.max_depth + 1))


def _param_count(arch: ArchConfig) -> int:
    """Parameters of ``arch``'s network, counted on the meta device (no memory, no init)."""
    with torch.device("meta"):
        return sum(p.numel() for p in static_model(arch).parameters())

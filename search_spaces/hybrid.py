"""Hybrid conv -> attention space (ViT-ResNAS, AsCAN, EfficientFormer).

Stages run from high resolution to low; every stage after the first halves the resolution with
a residual spatial reduction. Per stage the space searches the width and how many conv blocks
and attention blocks it has (AsCAN's asymmetric split, EfficientFormer's 4D/3D partition: a
stage may mix both, convs first); per block the conv expansion and SparseConv2d pattern, or the
attention variant, heads, MLP ratio and SparseLinear pattern.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from search_spaces.arch import (
    ACTIVATIONS,
    ATTENTIONS,
    ConvBlockConfig,
    HybridArchConfig,
    LayerConfig,
    hidden_width,
    stage_resolutions,
)
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
from search_spaces.supernet import HybridSupernet


@dataclass(frozen=True)
class StageChoices:
    width: list[int]
    conv_blocks: tuple[int, int]  # [min, max]
    attention_blocks: tuple[int, int]


STAGE_KEYS = ("width", "conv_blocks", "attention_blocks")


def _stage(i: int, node: Mapping) -> StageChoices:
    if not isinstance(node, Mapping):
        raise SpaceError(f"space.stages[{i}]: expected a mapping with {', '.join(STAGE_KEYS)}")
    unknown = sorted(set(node) - set(STAGE_KEYS))
    if unknown:
        raise SpaceError(f"space.stages[{i}]: unknown key {unknown[0]!r}; valid: {', '.join(STAGE_KEYS)}")
    missing = [k for k in STAGE_KEYS if k not in node]
    if missing:
        raise SpaceError(f"space.stages[{i}].{missing[0]}: no value given")
    widths = check_choices(f"stages[{i}].width", node["width"])
    if not all(isinstance(w, int) for w in widths):
        raise SpaceError(f"space.stages[{i}].width: widths must be integers, got {widths}")
    return StageChoices(
        width=sorted(widths),
        conv_blocks=check_range(f"stages[{i}].conv_blocks", node["conv_blocks"], low=0),
        attention_blocks=check_range(f"stages[{i}].attention_blocks", node["attention_blocks"], low=0),
    )


class HybridSpace(SearchSpace):
    def __init__(
        self,
        *,
        name: str,
        image_size: int,
        in_channels: int,
        num_classes: int,
        stages: Sequence[Mapping],
        expansion: Sequence[float],
        head_dim: int,
        num_heads: Sequence[int],
        mlp_ratio: Sequence[float],
        attention: Sequence[str],
        activation: Sequence[str],
        conv_pattern: Sequence[str] = ("dense",),
        conv_sparsity: Sequence[float] = (0.5, 0.75, 0.9),
        mlp_pattern: Sequence[str] = ("dense",),
        mlp_sparsity: Sequence[float] = (0.5, 0.75, 0.9),
    ) -> None:
        self.name = name
        self.image_size, self.in_channels, self.num_classes = image_size, in_channels, num_classes
        if isinstance(stages, (str, Mapping)) or not stages:
            raise SpaceError("space.stages: expected a list of stages (width, conv_blocks, attention_blocks)")
        self.stages = [_stage(i, node) for i, node in enumerate(stages)]
        if sum(st.conv_blocks[0] + st.attention_blocks[0] for st in self.stages) == 0:
            raise SpaceError(
                "space.stages: the smallest member would have no block; give a stage "
                "conv_blocks or attention_blocks with a minimum of at least 1"
            )
        if not isinstance(head_dim, int) or head_dim < 1:
            raise SpaceError(f"space.head_dim: expected a positive int, got {head_dim!r}")
        self.head_dim = head_dim
        # Every choice list is kept cheapest first (see search_spaces.base).
        self.expansion = sorted(float(v) for v in check_choices("expansion", expansion))
        self.num_heads = sorted(int(v) for v in check_choices("num_heads", num_heads))
        self.mlp_ratio = sorted(float(v) for v in check_choices("mlp_ratio", mlp_ratio))
        self.attention = sorted(check_choices("attention", attention, ATTENTIONS), key=ATTENTIONS.index)
        self.activation = sorted(check_choices("activation", activation, ACTIVATIONS), key=ACTIVATIONS.index)
        self.conv = Sparsity("conv", conv_pattern, conv_sparsity)
        self.mlp = Sparsity("mlp", mlp_pattern, mlp_sparsity)
        widths = {w for st in self.stages for w in st.width}
        self.conv.check_widths(
            widths | {hidden_width(w, e) for w in widths for e in self.expansion}, "width x expansion"
        )
        self.mlp.check_widths(
            widths | {hidden_width(w, r) for w in widths for r in self.mlp_ratio}, "width x mlp_ratio"
        )

    def build(self, s: Suggester) -> HybridArchConfig:
        activation = choose(s, "activation", self.activation)
        stages = []
        for i, st in enumerate(self.stages):
            width = choose(s, f"stage{i}.width", st.width)
            convs = tuple(
                ConvBlockConfig(
                    expansion=choose(s, f"stage{i}.conv{j}.expansion", self.expansion),
                    **self.conv.choose(s, f"stage{i}.conv{j}"),
                )
                for j in range(choose_int(s, f"stage{i}.conv_blocks", *st.conv_blocks))
            )
            layers = tuple(
                LayerConfig(
                    num_heads=choose(s, f"stage{i}.attn{j}.num_heads", self.num_heads),
                    mlp_ratio=choose(s, f"stage{i}.attn{j}.mlp_ratio", self.mlp_ratio),
                    attention=choose(s, f"stage{i}.attn{j}.attention", self.attention),
                    **self.mlp.choose(s, f"stage{i}.attn{j}"),
                )
                for j in range(choose_int(s, f"stage{i}.attention_blocks", *st.attention_blocks))
            )
            stages.append({"width": width, "conv_blocks": convs, "attention_blocks": layers})
        return HybridArchConfig(
            image_size=self.image_size,
            in_channels=self.in_channels,
            num_classes=self.num_classes,
            head_dim=self.head_dim,
            activation=activation,
            stages=tuple(stages),
            space=self.name,
        )

    def make_supernet(self):

        return HybridSupernet.from_space(self)

    def axes(self) -> dict[str, str]:
        axes = {}
        sides = stage_resolutions(self.image_size, len(self.stages))
        for i, (st, side) in enumerate(zip(self.stages, sides)):
            axes[f"stage{i} ({side}x{side})"] = (
                f"width {st.width}, conv blocks {st.conv_blocks[0]}..{st.conv_blocks[1]}, "
                f"attention blocks {st.attention_blocks[0]}..{st.attention_blocks[1]}"
            )
        return (
            axes
            | {"conv<j>.expansion": str(self.expansion)}
            | self.conv.axes("conv<j>")
            | {
                "attn<j>.num_heads": f"{self.num_heads} (head_dim {self.head_dim})",
                "attn<j>.mlp_ratio": str(self.mlp_ratio),
                "attn<j>.attention": str(self.attention),
            }
            | self.mlp.axes("attn<j>")
            | {"activation": str(self.activation)}
        )

    def size(self) -> int:
        conv = len(self.expansion) * self.conv.options()
        attn = len(self.num_heads) * len(self.mlp_ratio) * len(self.attention) * self.mlp.options()
        total = len(self.activation)
        for st in self.stages:
            convs = sum(conv**n for n in range(st.conv_blocks[0], st.conv_blocks[1] + 1))
            attns = sum(attn**n for n in range(st.attention_blocks[0], st.attention_blocks[1] + 1))
            total *= len(st.width) * convs * attns
        return total

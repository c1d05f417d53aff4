"""Hybrid conv -> attention space (ViT-ResNAS, AsCAN, EfficientFormer, and ResNet's stages).

Stages run from high resolution to low; every stage after the first halves the resolution with
a residual spatial reduction or ResNet's strided basic block (``downsample``). Per stage the
space searches the width and how many ResNet basic blocks, Fused-MBConv conv blocks and
attention blocks it has (AsCAN's asymmetric split, EfficientFormer's 4D/3D partition: a stage
may mix them, convs first); per block the basic block's inner ratio, the conv expansion and
SparseConv2d pattern, or the attention variant, heads, MLP ratio and SparseLinear pattern. The
stem (one strided conv or resnet10t's deep stem, with or without ResNet's max pool) and, with
``min_stages``, how many stages there are are searched too, so resnet10t-like networks are
members of a space that allows their widths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from search_spaces.arch import (
    ACTIVATIONS,
    ATTENTIONS,
    DOWNSAMPLES,
    HYBRID_STEMS,
    ConvBlockConfig,
    HybridArchConfig,
    LayerConfig,
    ResBlockConfig,
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
from search_spaces.shapes import hidden_width, stage_resolutions
from search_spaces.supernet import HybridSupernet


@dataclass(frozen=True)
class StageChoices:
    width: list[int]
    conv_blocks: tuple[int, int]  # [min, max]
    attention_blocks: tuple[int, int]
    res_blocks: tuple[int, int] = (0, 0)
    downsample: tuple[str, ...] = ("reduce",)  # cheapest first

    def options(self, first: bool, res: int, conv: int, attn: int) -> int:
        """Distinct stages, given the options of one res, conv and attention block."""
        total = len(self.width) * (1 if first else len(self.downsample))
        for (low, high), per_block in zip(
            (self.res_blocks, self.conv_blocks, self.attention_blocks), (res, conv, attn)
        ):
            total *= sum(per_block**n for n in range(low, high + 1))
        return total


STAGE_KEYS = ("width", "conv_blocks", "attention_blocks")
OPTIONAL_STAGE_KEYS = ("res_blocks", "downsample")  # [0, 0] and [reduce] when left out


def _stage(i: int, node: Mapping) -> StageChoices:
    valid = ", ".join(STAGE_KEYS + OPTIONAL_STAGE_KEYS)
    if not isinstance(node, Mapping):
        raise SpaceError(f"space.stages[{i}]: expected a mapping with {valid}")
    unknown = sorted(set(node) - set(STAGE_KEYS) - set(OPTIONAL_STAGE_KEYS))
    if unknown:
        raise SpaceError(f"space.stages[{i}]: unknown key {unknown[0]!r}; valid: {valid}")
    missing = [k for k in STAGE_KEYS if k not in node]
    if missing:
        raise SpaceError(f"space.stages[{i}].{missing[0]}: no value given")
    widths = check_choices(f"stages[{i}].width", node["width"])
    if not all(isinstance(w, int) for w in widths):
        raise SpaceError(f"space.stages[{i}].width: widths must be integers, got {widths}")
    downsample = check_choices(f"stages[{i}].downsample", node.get("downsample", ["reduce"]), DOWNSAMPLES)
    if i == 0 and downsample != ["reduce"]:
        raise SpaceError(
            "space.stages[0].downsample: the first stage has no downsample (the stem halves the input)"
        )
    return StageChoices(
        width=sorted(widths),
        conv_blocks=check_range(f"stages[{i}].conv_blocks", node["conv_blocks"], low=0),
        attention_blocks=check_range(f"stages[{i}].attention_blocks", node["attention_blocks"], low=0),
        res_blocks=check_range(f"stages[{i}].res_blocks", node.get("res_blocks", [0, 0]), low=0),
        downsample=tuple(sorted(downsample, key=DOWNSAMPLES.index)),
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
        res_ratio: Sequence[float] = (1.0,),
        stem: Sequence[str] = ("conv",),
        stem_pool: Sequence[bool] = (False,),
        min_stages: int | None = None,
    ) -> None:
        self.name = name
        self.image_size, self.in_channels, self.num_classes = image_size, in_channels, num_classes
        if isinstance(stages, (str, Mapping)) or not stages:
            raise SpaceError("space.stages: expected a list of stages (width, conv_blocks, attention_blocks)")
        self.stages = [_stage(i, node) for i, node in enumerate(stages)]
        if min_stages is None:
            min_stages = len(self.stages)
        if (
            isinstance(min_stages, bool)
            or not isinstance(min_stages, int)
            or not 1 <= min_stages <= len(stages)
        ):
            raise SpaceError(
                f"space.min_stages: expected an int in [1, {len(stages)}] (the stages given), "
                f"got {min_stages!r}"
            )
        self.min_stages = min_stages
        smallest = sum(
            st.res_blocks[0] + st.conv_blocks[0] + st.attention_blocks[0] + (st.downsample == ("res",))
            for st in self.stages[:min_stages]
        )
        if smallest == 0 and min_stages == 1:
            raise SpaceError(
                "space.stages: the smallest member would have no block; give a stage res_blocks, "
                "conv_blocks or attention_blocks with a minimum of at least 1 (or two stages)"
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
        self.res_ratio = sorted(float(v) for v in check_choices("res_ratio", res_ratio))
        self.stem = sorted(check_choices("stem", stem, HYBRID_STEMS), key=HYBRID_STEMS.index)
        pools = check_choices("stem_pool", stem_pool, (True, False))
        if not all(isinstance(v, bool) for v in pools):
            raise SpaceError(f"space.stem_pool: expected a list of true/false, got {pools}")
        self.stem_pool = sorted(pools, reverse=True)  # the pool halves every later stage: cheapest first
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
        stem = choose(s, "stem", self.stem)
        stem_pool = choose(s, "stem_pool", self.stem_pool)
        stages = []
        for i, st in enumerate(self.stages[: choose_int(s, "stages", self.min_stages, len(self.stages))]):
            width = choose(s, f"stage{i}.width", st.width)
            downsample = choose(s, f"stage{i}.downsample", st.downsample) if i else "reduce"
            res = tuple(
                ResBlockConfig(choose(s, f"stage{i}.res{j}.ratio", self.res_ratio))
                for j in range(choose_int(s, f"stage{i}.res_blocks", *st.res_blocks))
            )
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
            stages.append(
                {
                    "width": width,
                    "conv_blocks": convs,
                    "attention_blocks": layers,
                    "res_blocks": res,
                    "downsample": downsample,
                }
            )
        return HybridArchConfig(
            image_size=self.image_size,
            in_channels=self.in_channels,
            num_classes=self.num_classes,
            head_dim=self.head_dim,
            activation=activation,
            stages=tuple(stages),
            space=self.name,
            stem=stem,
            stem_pool=stem_pool,
        )

    def make_supernet(self):

        return HybridSupernet.from_space(self)

    def axes(self) -> dict[str, str]:
        axes = {"stem": str(self.stem), "stem_pool": str(self.stem_pool)}
        if self.min_stages < len(self.stages):
            axes["stages"] = f"{self.min_stages}..{len(self.stages)}"
        sides = stage_resolutions(self.image_size, len(self.stages))
        pooled = stage_resolutions(self.image_size, len(self.stages), pool=True)
        for i, (st, side, half) in enumerate(zip(self.stages, sides, pooled)):
            where = f"{side}x{side}" + (f" or {half}x{half}" if True in self.stem_pool else "")
            res = f"res blocks {st.res_blocks[0]}..{st.res_blocks[1]}, " if st.res_blocks[1] else ""
            down = f", downsample {list(st.downsample)}" if i and st.downsample != ("reduce",) else ""
            axes[f"stage{i} ({where})"] = (
                f"width {st.width}, {res}conv blocks {st.conv_blocks[0]}..{st.conv_blocks[1]}, "
                f"attention blocks {st.attention_blocks[0]}..{st.attention_blocks[1]}{down}"
            )
        if any(st.res_blocks[1] for st in self.stages):
            axes["res<j>.ratio"] = str(self.res_ratio)
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
        res = len(self.res_ratio)
        stages, prefix = 0, 1
        for i, st in enumerate(self.stages):
            prefix *= st.options(i == 0, res, conv, attn)
            if i + 1 >= self.min_stages:  # members with exactly i + 1 stages
                stages += prefix
        return len(self.activation) * len(self.stem) * len(self.stem_pool) * stages

"""ArchConfig: the one description of a candidate network.

The search space produces it, the supernet runs it, profilers measure it, the study stores it
(as JSON in a trial's user attributes) and the exporter builds it. It is frozen, validated on
construction, round-trips through JSON/YAML and has a stable ``key()``. Two families share
that contract: ``ArchConfig`` (a plain vision transformer) and ``HybridArchConfig`` (conv stages
at high resolution, attention after spatial reduction); ``arch_from_dict`` reads either by the
``family`` tag its ``to_dict()`` carries.

Over 400 lines: both families' records, validation and key rules stay beside each other (a key
that changed would orphan stored studies); the stage-side arithmetic is in ``shapes.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

# The shared arithmetic, importable from here as before.
from search_spaces.shapes import BLOCK_SIZE as BLOCK_SIZE
from search_spaces.shapes import PATTERNS as PATTERNS
from search_spaces.shapes import STEM_SIDE as STEM_SIDE
from search_spaces.shapes import hidden_width as hidden_width
from search_spaces.shapes import kept as kept
from search_spaces.shapes import pattern_group as pattern_group
from search_spaces.shapes import pattern_level as pattern_level
from search_spaces.shapes import pattern_n_m as pattern_n_m
from search_spaces.shapes import stage_resolutions as stage_resolutions
from search_spaces.shapes import stem_strides as stem_strides

# Known ops, cheapest first (spaces order their choices by this; see search_spaces.base).
ATTENTIONS = ("none", "pool", "linear", "slab", "local", "mqa", "gqa", "sqa", "softmax")
# topk10 / topk25: ReLU keeping only the 10 % / 25 % largest hidden activations per token.
ACTIVATIONS = ("topk10", "topk25", "relu", "gelu")
# Stems, cheapest first. vit: "patch" (one strided conv, the patch embedding) or "conv" (two
# stride-2 3x3 convs with BatchNorm, then the patch embedding of the remaining factor: EfficientFormer,
# ViT-ResNAS). hybrid: "conv" (one stride-2 3x3 conv) or "deep" (resnet10t's: three 3x3 convs).
VIT_STEMS = ("patch", "conv")
CONV_STEM_STRIDE = 4  # the vit conv stem's two stride-2 convs
HYBRID_STEMS = ("conv", "deep")
# How a hybrid stage after the first halves the resolution, cheapest first: "reduce" (the
# residual spatial reduction of ViT-ResNAS) or "res" (ResNet's strided basic block).
DOWNSAMPLES = ("reduce", "res")
SCHEMA_VERSION = 1


class ArchError(ValueError):
    """An architecture description that cannot describe a real network."""


def _set_positive_float(config: Any, name: str) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ArchError(f"{name} must be a number > 0, got {value!r}")
    object.__setattr__(config, name, float(value))  # 2 and 2.0 give one key


def _check_sparsity(config: Any, prefix: str) -> None:
    """Validate ``<prefix>_pattern`` / ``<prefix>_sparsity`` of a layer or block config."""
    pattern, level = getattr(config, f"{prefix}_pattern"), getattr(config, f"{prefix}_sparsity")
    if pattern not in PATTERNS:
        raise ArchError(f"{prefix}_pattern must be one of {PATTERNS}, got {pattern!r}")
    if isinstance(level, bool) or not isinstance(level, (int, float)):
        raise ArchError(f"{prefix}_sparsity must be a number, got {level!r}")
    object.__setattr__(config, f"{prefix}_sparsity", float(level))
    implied = pattern_level(pattern)
    if implied is not None and abs(level - implied) > 1e-9:
        raise ArchError(f"{prefix}_pattern {pattern} implies {prefix}_sparsity {implied}")
    if implied is None and not 0 < level < 1:
        raise ArchError(f"{prefix}_sparsity must be in (0, 1) for {pattern}, got {level}")


def _check_divisible(pattern: str, widths: dict[str, int]) -> None:
    group = pattern_group(pattern)
    if any(width % group for width in widths.values()):
        named = ", ".join(f"{name} ({width})" for name, width in widths.items())
        raise ArchError(f"pattern {pattern} needs {named} divisible by {group}")


def _canonical(value: Any) -> Any:
    """``dataclasses.asdict`` without the fields a class added later (its ``LATER`` names) where
    they hold their defaults."""
    if dataclasses.is_dataclass(value):
        later = getattr(type(value), "LATER", ())
        return {
            f.name: _canonical(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.name in later and getattr(value, f.name) == f.default)
        }
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ArchError(f"{name} must be one of {allowed}, got {value!r}")


FAMILIES: dict[str, type[Arch]] = {}  # family tag -> class, filled by Arch subclasses


class Arch:
    """Base of the architecture families: a frozen, validated dataclass with a JSON/YAML round
    trip that carries its ``family`` tag, and a stable ``key()``. ``arch_from_dict`` reads any
    family; a family registers by subclassing with ``family="name"``."""

    family: ClassVar[str]

    def __init_subclass__(cls, family: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.family = family
        FAMILIES[family] = cls

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family} | dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        family = _family_of(data)
        data = {name: value for name, value in data.items() if name != "family"}
        if family != cls.family:
            raise ArchError(f"a {family!r} architecture is not a {cls.__name__} ({cls.family!r})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ArchError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str):
        import yaml

        return cls.from_dict(yaml.safe_load(text))

    def key(self) -> str:
        """Stable identity: sha1 of the canonical JSON of the fields (ratios and levels are
        always floats). The family tag is left out: the fields tell the families apart, and keys
        stay those of studies and latency tables written before the tag existed; so are fields
        added later (``LATER``) while they hold their defaults, so an old architecture keeps its key."""
        canonical = json.dumps(_canonical(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(canonical.encode()).hexdigest()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.image_size, self.image_size)

    def _check_common(self) -> None:
        for name in ("image_size", "in_channels", "num_classes", "head_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ArchError(f"{name} must be a positive int, got {value!r}")
        if self.activation not in ACTIVATIONS:
            raise ArchError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.schema_version != SCHEMA_VERSION:
            raise ArchError(f"unsupported schema_version {self.schema_version}")


@dataclass(frozen=True)
class LayerConfig:
    """One transformer block: token mixer (attention) then MLP."""

    num_heads: int  # attention heads; attention width = num_heads * head_dim
    mlp_ratio: float  # MLP hidden width = int(embed_dim * mlp_ratio)
    attention: str = "softmax"  # one of ATTENTIONS
    mlp_pattern: str = "dense"  # weight sparsity pattern of fc1 and fc2, one of PATTERNS
    mlp_sparsity: float = 0.0  # share of weights (or hidden units, if structured) removed

    def __post_init__(self) -> None:
        _check_sparsity(self, "mlp")
        if not isinstance(self.num_heads, int) or self.num_heads < 1:
            raise ArchError(f"num_heads must be a positive int, got {self.num_heads!r}")
        _set_positive_float(self, "mlp_ratio")
        if self.attention not in ATTENTIONS:
            raise ArchError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")


@dataclass(frozen=True)
class ArchConfig(Arch, family="vit"):
    """A vision transformer: patch embedding (or, with ``stem="conv"``, two stride-2 3x3 convs
    and a patch embedding of ``patch_size / 4``: the same tokens), ``len(layers)`` blocks,
    mean-pool, linear head."""

    LATER: ClassVar[tuple[str, ...]] = ("stem",)  # fields added later (see Arch.key)

    image_size: int  # input is (in_channels, image_size, image_size)
    in_channels: int
    num_classes: int
    patch_size: int
    embed_dim: int
    head_dim: int  # width of one attention head (fixed per space, as in AutoFormer)
    activation: str
    layers: tuple[LayerConfig, ...]
    space: str = ""  # name of the space that produced it (informative, part of the key)
    schema_version: int = field(default=SCHEMA_VERSION)
    stem: str = "patch"  # one of VIT_STEMS

    def __post_init__(self) -> None:
        # Accept lists/dicts (e.g. straight from JSON) and normalise to tuples of LayerConfig.
        layers = tuple(
            layer if isinstance(layer, LayerConfig) else LayerConfig(**layer) for layer in self.layers
        )
        object.__setattr__(self, "layers", layers)
        for name in ("patch_size", "embed_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ArchError(f"{name} must be a positive int, got {value!r}")
        self._check_common()
        if self.image_size % self.patch_size:
            raise ArchError(f"patch_size {self.patch_size} does not divide image_size {self.image_size}")
        _check_choice("stem", self.stem, VIT_STEMS)
        if self.stem == "conv" and (self.patch_size % CONV_STEM_STRIDE or self.embed_dim % 2):
            raise ArchError(
                f"stem conv needs patch_size divisible by {CONV_STEM_STRIDE} and an even embed_dim, "
                f"got patch_size {self.patch_size}, embed_dim {self.embed_dim}"
            )
        if not layers:
            raise ArchError("an architecture needs at least one layer")
        for layer in layers:
            _check_divisible(
                layer.mlp_pattern, {"embed_dim": self.embed_dim, "MLP hidden width": self.mlp_hidden(layer)}
            )

    # -- derived ---------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def num_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def mlp_hidden(self, layer: LayerConfig) -> int:
        """MLP hidden width before structured pruning (what the supernet slices)."""
        return hidden_width(self.embed_dim, layer.mlp_ratio)

    def summary(self) -> str:
        """Short human-readable description, e.g. ``p4 d64 L3 [2h/2x/sm 4h/4x/lin ...] gelu``."""
        blocks = " ".join(_layer_summary(layer) for layer in self.layers)
        stem = "cs" if self.stem == "conv" else ""
        return f"{stem}p{self.patch_size} d{self.embed_dim} L{self.depth} [{blocks}] {self.activation}"


def _sparsity_summary(pattern: str, level: float) -> str:
    if pattern == "dense":
        return ""
    if pattern_n_m(pattern):
        return f"/{pattern}"
    return f"/{pattern[:2]}{round(level * 100)}"


def _layer_summary(layer: LayerConfig) -> str:
    short = {"softmax": "sm", "linear": "lin", "local": "loc", "none": "-"}  # others as named
    return (
        f"{layer.num_heads}h/{layer.mlp_ratio:g}x/{short.get(layer.attention, layer.attention)}"
        f"{_sparsity_summary(layer.mlp_pattern, layer.mlp_sparsity)}"
    )


@dataclass(frozen=True)
class ConvBlockConfig:
    """A residual conv block (Fused-MBConv): 3x3 SparseConv2d from the stage width to
    ``width * expansion`` channels, activation, 1x1 SparseConv2d back."""

    expansion: float
    conv_pattern: str = "dense"  # weight sparsity pattern of both convs, one of PATTERNS
    conv_sparsity: float = 0.0  # share of weights (or hidden channels, if structured) removed

    def __post_init__(self) -> None:
        _set_positive_float(self, "expansion")
        _check_sparsity(self, "conv")


@dataclass(frozen=True)
class ResBlockConfig:
    """A ResNet basic block: 3x3 conv from the stage width to ``width * ratio`` channels,
    BatchNorm, ReLU, 3x3 conv back, BatchNorm, plus the input, ReLU (dense: the op ONNX Runtime's
    CPU kernels run best, conv + BatchNorm + ReLU fused into one)."""

    ratio: float = 1.0

    def __post_init__(self) -> None:
        _set_positive_float(self, "ratio")


@dataclass(frozen=True)
class StageConfig:
    """One resolution: (after the first stage) the ``downsample`` that halves it, then
    ``res_blocks``, ``conv_blocks`` and ``attention_blocks`` on the stage's tokens, in that order.
    A ``res`` downsample is ResNet's strided first block (3x3 convs with a pooled 1x1 shortcut),
    so a resnet10t-like stage is ``downsample="res"`` and no further block."""

    LATER: ClassVar[tuple[str, ...]] = ("res_blocks", "downsample")  # see Arch.key

    width: int
    conv_blocks: tuple[ConvBlockConfig, ...] = ()
    attention_blocks: tuple[LayerConfig, ...] = ()
    res_blocks: tuple[ResBlockConfig, ...] = ()
    downsample: str = "reduce"  # one of DOWNSAMPLES (ignored by the first stage: it has none)

    def __post_init__(self) -> None:
        if not isinstance(self.width, int) or self.width < 1:
            raise ArchError(f"stage width must be a positive int, got {self.width!r}")
        _check_choice("downsample", self.downsample, DOWNSAMPLES)
        for name, kind in (
            ("res_blocks", ResBlockConfig),
            ("conv_blocks", ConvBlockConfig),
            ("attention_blocks", LayerConfig),
        ):
            blocks = tuple(b if isinstance(b, kind) else kind(**b) for b in getattr(self, name))
            object.__setattr__(self, name, blocks)

    @property
    def depth(self) -> int:
        """Its blocks, a res downsample (a block of its own) included."""
        blocks = len(self.res_blocks) + len(self.conv_blocks) + len(self.attention_blocks)
        return blocks + (self.downsample == "res")


@dataclass(frozen=True)
class HybridArchConfig(Arch, family="hybrid"):
    """A hybrid conv -> attention network (ViT-ResNAS, AsCAN, EfficientFormer).

    A conv stem of stride-2 convs (``stem_strides``: one at 28-32 px, four at 224; ``stem``
    ``"deep"``: resnet10t's three 3x3 convs), with ``stem_pool`` a stride-2 max pool after it,
    then ``stages``; every stage after the first halves the resolution (its ``downsample``), so
    attention runs on few tokens late in the network. Global average pool, LayerNorm, linear head.
    """

    LATER: ClassVar[tuple[str, ...]] = ("stem", "stem_pool")  # see Arch.key

    image_size: int
    in_channels: int
    num_classes: int
    head_dim: int
    activation: str
    stages: tuple[StageConfig, ...]
    space: str = ""
    schema_version: int = field(default=SCHEMA_VERSION)
    stem: str = "conv"  # one of HYBRID_STEMS
    stem_pool: bool = False  # a 3x3 stride-2 max pool after the stem (ResNet's)

    def __post_init__(self) -> None:
        stages = tuple(st if isinstance(st, StageConfig) else StageConfig(**st) for st in self.stages)
        object.__setattr__(self, "stages", stages)
        self._check_common()
        _check_choice("stem", self.stem, HYBRID_STEMS)
        if not isinstance(self.stem_pool, bool):
            raise ArchError(f"stem_pool must be true or false, got {self.stem_pool!r}")
        if not stages:
            raise ArchError("a hybrid architecture needs at least one stage")
        if stages[0].downsample != "reduce":
            raise ArchError("stage 0 has no downsample (the stem halves the input): leave its downsample out")
        if self.depth == 0 and len(stages) == 1:  # (two stages: stem, downsample and head are convs)
            raise ArchError("a hybrid architecture needs at least one conv or attention block, or two stages")
        for i, stage in enumerate(stages):
            for block in stage.conv_blocks:
                hidden = hidden_width(stage.width, block.expansion)
                _check_divisible(block.conv_pattern, {f"stage {i} width": stage.width, "conv hidden": hidden})
            for layer in stage.attention_blocks:
                hidden = hidden_width(stage.width, layer.mlp_ratio)
                _check_divisible(layer.mlp_pattern, {f"stage {i} width": stage.width, "MLP hidden": hidden})

    @property
    def depth(self) -> int:
        """All blocks: residual, conv and attention (and res downsamples)."""
        return sum(st.depth for st in self.stages)

    def resolutions(self) -> list[int]:
        return stage_resolutions(self.image_size, len(self.stages), self.stem_pool)

    def summary(self) -> str:
        """E.g. ``w24 c2x | w48 c1x [2h/2x/sm] | ... gelu`` (conv expansions, attention layers);
        ``deep+pool | w64 r1x | w128 rd ...`` for a deep stem with its pool, res blocks (``r``)
        and res downsamples (``rd``)."""
        parts = []
        for stage in self.stages:
            res = ["rd"] if stage.downsample == "res" else []
            res += [f"r{b.ratio:g}x" for b in stage.res_blocks]
            convs = " ".join(
                f"c{b.expansion:g}x{_sparsity_summary(b.conv_pattern, b.conv_sparsity)}"
                for b in stage.conv_blocks
            )
            attn = " ".join(_layer_summary(layer) for layer in stage.attention_blocks)
            pieces = [f"w{stage.width}", *res, convs, f"[{attn}]" if attn else ""]
            parts.append(" ".join(filter(None, pieces)))
        stem = "+".join(([self.stem] if self.stem != "conv" else []) + (["pool"] if self.stem_pool else []))
        return f"{stem + ' | ' if stem else ''}{' | '.join(parts)} {self.activation}"


def _family_of(data: Any) -> str:
    """The ``family`` tag of an architecture record; every ``to_dict()`` writes it and every reader
    requires it (no record in the repository lacks it: the tag is never guessed from the fields)."""
    if not isinstance(data, dict):
        raise ArchError(f"an architecture is a mapping of its fields, got {type(data).__name__}")
    if "family" not in data:
        raise ArchError(f"an architecture needs its 'family' key (one of: {', '.join(FAMILIES)})")
    return data["family"]


def arch_from_dict(data: dict[str, Any]) -> Arch:
    """An architecture of any family from its ``to_dict()``, by its ``family`` tag."""
    family = _family_of(data)
    if family not in FAMILIES:
        raise ArchError(f"unknown architecture family {family!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[family].from_dict(data)

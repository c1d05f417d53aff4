"""ArchConfig: the one description of a candidate network.

The search space produces it, the supernet runs it, profilers measure it, the study stores it
(as JSON in a trial's user attributes) and the exporter builds it. It is frozen, validated on
construction, round-trips through JSON/YAML and has a stable ``key()``. Two families share
that contract: ``ArchConfig`` (a plain vision transformer) and ``HybridArchConfig`` (conv stages
at high resolution, attention after spatial reduction); ``arch_from_dict`` reads either by the
``family`` tag its ``to_dict()`` carries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

# Known ops, cheapest first (spaces order their choices by this; see search_spaces.base).
ATTENTIONS = ("none", "pool", "linear", "slab", "local", "mqa", "gqa", "sqa", "softmax")
# topk10 / topk25: ReLU keeping only the 10 % / 25 % largest hidden activations per token.
ACTIVATIONS = ("topk10", "topk25", "relu", "gelu")
# Weight sparsity patterns of the MLP's SparseLinear layers (see search_spaces.sparse), cheapest first.
PATTERNS = ("structured", "block", "unstructured", "4:8", "2:4", "dense")
BLOCK_SIZE = 4  # block pattern: 4x4 blocks


def pattern_n_m(pattern: str) -> tuple[int, int] | None:
    """(N, M) of an N:M pattern such as "2:4", else None."""
    if ":" in pattern:
        n, m = pattern.split(":")
        return int(n), int(m)
    return None


def pattern_group(pattern: str) -> int:
    """Widths must be multiples of this for the pattern (M of N:M, the block size, else 1)."""
    nm = pattern_n_m(pattern)
    return nm[1] if nm else BLOCK_SIZE if pattern == "block" else 1


def kept(count: int, level: float) -> int:
    """How many of ``count`` weights, blocks or units a sparsity ``level`` keeps (at least one)."""
    return max(1, round(count * (1 - level)))


def pattern_level(pattern: str) -> float | None:
    """The sparsity a dense or N:M pattern implies; None where the level is a free choice."""
    if pattern == "dense":
        return 0.0
    nm = pattern_n_m(pattern)
    return 1 - nm[0] / nm[1] if nm else None


SCHEMA_VERSION = 1


class ArchError(ValueError):
    """An architecture description that cannot describe a real network."""


def hidden_width(width: int, ratio: float) -> int:
    """Hidden width of an MLP or conv block expanding ``width`` by ``ratio`` (before pruning)."""
    return int(width * ratio)


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
        stay those of studies and latency tables written before the tag existed."""
        canonical = json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))
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
    """A vision transformer: patch embedding, ``len(layers)`` blocks, mean-pool, linear head."""

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
        return f"p{self.patch_size} d{self.embed_dim} L{self.depth} [{blocks}] {self.activation}"


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
class StageConfig:
    """One resolution: ``conv_blocks`` first, then ``attention_blocks`` on the stage's tokens."""

    width: int
    conv_blocks: tuple[ConvBlockConfig, ...] = ()
    attention_blocks: tuple[LayerConfig, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.width, int) or self.width < 1:
            raise ArchError(f"stage width must be a positive int, got {self.width!r}")
        convs = tuple(b if isinstance(b, ConvBlockConfig) else ConvBlockConfig(**b) for b in self.conv_blocks)
        layers = tuple(b if isinstance(b, LayerConfig) else LayerConfig(**b) for b in self.attention_blocks)
        object.__setattr__(self, "conv_blocks", convs)
        object.__setattr__(self, "attention_blocks", layers)


STEM_SIDE = 16  # a hybrid's stem brings the input near this side, whatever the image size


def stem_strides(image_size: int) -> int:
    """How many stride-2 convs a hybrid's stem has: one at 28 or 32 px, two at 64, four at 224,
    so the first stage runs near ``STEM_SIDE`` x ``STEM_SIDE`` on any data."""
    return max(1, round(math.log2(max(1, image_size) / STEM_SIDE)))


def stage_resolutions(image_size: int, num_stages: int) -> list[int]:
    """Side of each hybrid stage's feature map: the stem halves the input (``stem_strides``
    times), each later stage halves it again."""
    sides = [image_size]
    for _ in range(stem_strides(image_size)):
        sides = [-(-sides[0] // 2)]
    while len(sides) < num_stages:
        sides.append(-(-sides[-1] // 2))
    return sides


@dataclass(frozen=True)
class HybridArchConfig(Arch, family="hybrid"):
    """A hybrid conv -> attention network (ViT-ResNAS, AsCAN, EfficientFormer).

    A conv stem of stride-2 convs (``stem_strides``: one at 28-32 px, four at 224), then
    ``stages``; every stage after the first halves the resolution
    with a residual spatial reduction, so attention runs on few tokens late in the network.
    Global average pool, LayerNorm, linear head.
    """

    image_size: int
    in_channels: int
    num_classes: int
    head_dim: int
    activation: str
    stages: tuple[StageConfig, ...]
    space: str = ""
    schema_version: int = field(default=SCHEMA_VERSION)

    def __post_init__(self) -> None:
        stages = tuple(st if isinstance(st, StageConfig) else StageConfig(**st) for st in self.stages)
        object.__setattr__(self, "stages", stages)
        self._check_common()
        if not stages:
            raise ArchError("a hybrid architecture needs at least one stage")
        if self.depth == 0:
            raise ArchError("a hybrid architecture needs at least one conv or attention block")
        for i, stage in enumerate(stages):
            for block in stage.conv_blocks:
                hidden = hidden_width(stage.width, block.expansion)
                _check_divisible(block.conv_pattern, {f"stage {i} width": stage.width, "conv hidden": hidden})
            for layer in stage.attention_blocks:
                hidden = hidden_width(stage.width, layer.mlp_ratio)
                _check_divisible(layer.mlp_pattern, {f"stage {i} width": stage.width, "MLP hidden": hidden})

    @property
    def depth(self) -> int:
        """All blocks, conv and attention."""
        return sum(len(st.conv_blocks) + len(st.attention_blocks) for st in self.stages)

    def resolutions(self) -> list[int]:
        return stage_resolutions(self.image_size, len(self.stages))

    def summary(self) -> str:
        """E.g. ``w24 c2x | w48 c1x sm:[2h/2x/sm] | ... gelu`` (conv expansions, attention layers)."""
        parts = []
        for stage in self.stages:
            convs = " ".join(
                f"c{b.expansion:g}x{_sparsity_summary(b.conv_pattern, b.conv_sparsity)}"
                for b in stage.conv_blocks
            )
            attn = " ".join(_layer_summary(layer) for layer in stage.attention_blocks)
            parts.append(" ".join(filter(None, [f"w{stage.width}", convs, f"[{attn}]" if attn else ""])))
        return f"{' | '.join(parts)} {self.activation}"


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

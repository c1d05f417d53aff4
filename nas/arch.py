"""ArchConfig: the one description of a candidate network.

The search space produces it, the supernet runs it, profilers measure it, the study stores it
(as JSON in a trial's user attributes) and the exporter builds it. It is frozen, validated on
construction, round-trips through JSON/YAML and has a stable ``key()``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class LayerConfig:
    """One transformer block: token mixer (attention) then MLP."""

    num_heads: int  # attention heads; attention width = num_heads * head_dim
    mlp_ratio: float  # MLP hidden width = int(embed_dim * mlp_ratio)
    attention: str = "softmax"  # one of ATTENTIONS
    mlp_pattern: str = "dense"  # weight sparsity pattern of fc1 and fc2, one of PATTERNS
    mlp_sparsity: float = 0.0  # share of weights (or hidden units, if structured) removed

    def __post_init__(self) -> None:
        if self.mlp_pattern not in PATTERNS:
            raise ArchError(f"mlp_pattern must be one of {PATTERNS}, got {self.mlp_pattern!r}")
        implied = pattern_level(self.mlp_pattern)
        if implied is not None and abs(self.mlp_sparsity - implied) > 1e-9:
            raise ArchError(f"mlp_pattern {self.mlp_pattern} implies mlp_sparsity {implied}")
        if implied is None and not 0 < self.mlp_sparsity < 1:
            raise ArchError(f"mlp_sparsity must be in (0, 1) for {self.mlp_pattern}, got {self.mlp_sparsity}")
        if not isinstance(self.num_heads, int) or self.num_heads < 1:
            raise ArchError(f"num_heads must be a positive int, got {self.num_heads!r}")
        if not self.mlp_ratio > 0:
            raise ArchError(f"mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        if self.attention not in ATTENTIONS:
            raise ArchError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")


@dataclass(frozen=True)
class ArchConfig:
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
        for name in ("image_size", "in_channels", "num_classes", "patch_size", "embed_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ArchError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.head_dim, int) or self.head_dim < 1:
            raise ArchError(f"head_dim must be a positive int, got {self.head_dim!r}")
        if self.image_size % self.patch_size:
            raise ArchError(f"patch_size {self.patch_size} does not divide image_size {self.image_size}")
        if self.activation not in ACTIVATIONS:
            raise ArchError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if not layers:
            raise ArchError("an architecture needs at least one layer")
        for layer in layers:
            hidden, group = self.mlp_hidden(layer), pattern_group(layer.mlp_pattern)
            if self.embed_dim % group or hidden % group:
                raise ArchError(
                    f"mlp_pattern {layer.mlp_pattern} needs embed_dim ({self.embed_dim}) and MLP "
                    f"hidden width ({hidden}) divisible by {group}"
                )
        if self.schema_version != SCHEMA_VERSION:
            raise ArchError(f"unsupported schema_version {self.schema_version}")

    # -- derived ---------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def num_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def mlp_hidden(self, layer: LayerConfig) -> int:
        """MLP hidden width before structured pruning (what the supernet slices)."""
        return int(self.embed_dim * layer.mlp_ratio)

    def mlp_kept(self, layer: LayerConfig) -> int:
        """MLP hidden units that remain: fewer only under structured sparsity."""
        hidden = self.mlp_hidden(layer)
        return kept(hidden, layer.mlp_sparsity) if layer.mlp_pattern == "structured" else hidden

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.image_size, self.image_size)

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ArchError(f"unknown ArchConfig keys: {sorted(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> ArchConfig:
        import yaml

        return cls.from_dict(yaml.safe_load(text))

    def key(self) -> str:
        """Stable identity: sha1 of the canonical JSON (floats normalised)."""
        canonical = json.loads(self.to_json())
        for layer in canonical["layers"]:
            layer["mlp_ratio"] = float(layer["mlp_ratio"])
            layer["mlp_sparsity"] = float(layer["mlp_sparsity"])
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(text.encode()).hexdigest()

    def summary(self) -> str:
        """Short human-readable description, e.g. ``p4 d64 L3 [2h/2x/sm 4h/4x/lin ...] gelu``."""
        short = {"softmax": "sm", "linear": "lin", "local": "loc", "none": "-"}  # others as named

        def sparsity(layer: LayerConfig) -> str:
            if layer.mlp_pattern == "dense":
                return ""
            if pattern_n_m(layer.mlp_pattern):
                return f"/{layer.mlp_pattern}"
            return f"/{layer.mlp_pattern[:2]}{round(layer.mlp_sparsity * 100)}"

        blocks = " ".join(
            f"{layer.num_heads}h/{layer.mlp_ratio:g}x/{short.get(layer.attention, layer.attention)}"
            f"{sparsity(layer)}"
            for layer in self.layers
        )
        return f"p{self.patch_size} d{self.embed_dim} L{self.depth} [{blocks}] {self.activation}"

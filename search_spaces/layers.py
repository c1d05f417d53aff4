"""Static networks of the spaces: plain PyTorch, what ``extract`` returns and ONNX sees.

Shapes: B batch, N tokens, D embed_dim (or a stage's width), h heads, hd head_dim, C channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.arch import (
    Arch,
    ArchConfig,
    ConvBlockConfig,
    HybridArchConfig,
    LayerConfig,
    hidden_width,
    kept,
    stem_strides,
)


class TopKReLU(nn.Module):
    """ReLU that keeps only the ``fraction`` largest activations of each token or pixel, along
    ``dim`` (top-k activation sparsity, as in "The Lazy Neuron Phenomenon", Li et al. 2023)."""

    def __init__(self, fraction: float, features: int, dim: int = -1) -> None:
        super().__init__()
        self.k = max(1, round(features * fraction))  # a constant, so the ONNX graph is static
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        threshold = x.topk(self.k, dim=self.dim).values.narrow(self.dim, self.k - 1, 1)  # k-th largest
        return F.relu(x) * (x >= threshold)


def make_activation(name: str, features: int, dim: int = -1) -> nn.Module:
    if name.startswith("topk"):
        return TopKReLU(int(name[4:]) / 100, features, dim)
    return {"gelu": nn.GELU, "relu": nn.ReLU}[name]()


def relu_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Linear attention with a ReLU kernel: O(N hd^2) instead of O(N^2 hd).

    phi(q) (phi(k)^T v) / (phi(q) sum_n phi(k_n)), phi = ReLU (as in SLAB / EfficientViT).
    q, k, v: (B, h, N, hd) -> (B, h, N, hd).
    """
    q, k = F.relu(q), F.relu(k)
    kv = k.transpose(-2, -1) @ v  # (B, h, hd, hd)
    normaliser = q @ k.sum(dim=-2, keepdim=True).transpose(-2, -1)  # (B, h, N, 1)
    return (q @ kv) / (normaliser + 1e-6)


def attention_heads(kind: str, num_heads: int) -> tuple[int, int]:
    """(query heads, key/value heads) of an attention kind with ``num_heads`` heads."""
    if kind == "gqa":  # grouped-query attention: pairs of query heads share a K/V head
        return num_heads, max(1, num_heads // 2)
    if kind == "mqa":  # multi-query attention: one K/V head for all query heads
        return num_heads, 1
    if kind == "sqa":  # sparse query attention: half as many query heads as K/V heads
        return max(1, num_heads // 2), num_heads
    return num_heads, num_heads


def local_mask(grid: int, radius: int, device: torch.device | None = None) -> torch.Tensor:
    """(N, N) bool: token i may attend to token j within ``radius`` rows and columns."""
    idx = torch.arange(grid * grid, device=device)
    rows, cols = idx // grid, idx % grid
    near_rows = (rows[:, None] - rows[None, :]).abs() <= radius
    return near_rows & ((cols[:, None] - cols[None, :]).abs() <= radius)


class Attention(nn.Module):
    """Attention token mixers sharing one layout: ``qkv`` rows are (q heads, k heads, v heads).

    softmax: multi-head SDPA; gqa/mqa: fewer K/V heads, repeated for the query heads; sqa:
    fewer query heads than K/V heads, each query head shared by a group of K/V heads (the
    "reverse" SQA of Filipek 2025: Q projection halved, output as wide as the K/V heads);
    local: SDPA restricted to a (2r+1)^2 neighbourhood on the token grid; linear: ReLU-kernel
    linear attention; slab: linear attention plus a depthwise 3x3 conv on V (SLAB).
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, kind: str, grid: int) -> None:
        super().__init__()
        self.kind, self.head_dim, self.grid = kind, head_dim, grid
        self.num_heads, self.num_kv_heads = attention_heads(kind, num_heads)
        self.num_out_heads = max(self.num_heads, self.num_kv_heads)
        self.qkv = nn.Linear(dim, (self.num_heads + 2 * self.num_kv_heads) * head_dim)
        self.proj = nn.Linear(self.num_out_heads * head_dim, dim)
        if kind == "slab":
            width = self.num_kv_heads * head_dim
            self.dwc = nn.Conv2d(width, width, 3, padding=1, groups=width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        h, h_kv, hd = self.num_heads, self.num_kv_heads, self.head_dim
        h_out = self.num_out_heads
        q, k, v = self.qkv(x).split([h * hd, h_kv * hd, h_kv * hd], dim=-1)
        q = q.reshape(B, N, h, hd).transpose(1, 2)  # (B, h, N, hd)
        k = k.reshape(B, N, h_kv, hd).transpose(1, 2)  # (B, h_kv, N, hd)
        v = v.reshape(B, N, h_kv, hd).transpose(1, 2)
        if h_kv < h:
            k, v = k.repeat_interleave(h // h_kv, dim=1), v.repeat_interleave(h // h_kv, dim=1)
        elif h < h_kv:  # sqa: each query head serves a group of K/V heads
            q = q.repeat_interleave(h_kv // h, dim=1)  # (B, h_kv, N, hd)
        if self.kind in ("softmax", "gqa", "mqa", "sqa"):
            out = F.scaled_dot_product_attention(q, k, v)
        elif self.kind == "local":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=local_mask(self.grid, 1, x.device))
        else:
            out = relu_linear_attention(q, k, v)
        out = out.transpose(1, 2).reshape(B, N, h_out * hd)
        if self.kind == "slab":
            grid_v = v.transpose(2, 3).reshape(B, h * hd, self.grid, self.grid)  # (B, h*hd, H, W)
            out = out + self.dwc(grid_v).flatten(2).transpose(1, 2)
        return self.proj(out)


class Pooling(nn.Module):
    """PoolFormer token mixer: 3x3 average pooling on the token grid, minus the input."""

    def __init__(self, grid: int) -> None:
        super().__init__()
        self.grid = grid
        self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        grid = x.transpose(1, 2).reshape(B, D, self.grid, self.grid)
        return (self.pool(grid) - grid).flatten(2).transpose(1, 2)


class SparsePair(nn.Module):
    """Two layers whose weights carry one sparsity pattern (SparseLinear / SparseConv2d pairs):
    ``fc1`` widens ``dim`` to ``hidden`` channels, ``fc2`` narrows back. Under the structured
    pattern whole hidden channels are removed, so ``fc1``/``fc2`` hold ``kept`` of them; the
    supernet slices ``hidden`` and applies the pattern (search_spaces.sparse.sparsify_pair).
    """

    def __init__(self, dim: int, hidden: int, pattern: str, level: float) -> None:
        super().__init__()
        self.dim, self.hidden, self.pattern, self.level = dim, hidden, pattern, level
        self.kept = kept(hidden, level) if pattern == "structured" else hidden


class Mlp(SparsePair):
    def __init__(
        self, dim: int, hidden: int, activation: str, pattern: str = "dense", level: float = 0.0
    ) -> None:
        super().__init__(dim, hidden, pattern, level)
        self.fc1 = nn.Linear(dim, self.kept)
        self.act = make_activation(activation, self.kept)
        self.fc2 = nn.Linear(self.kept, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvMlp(SparsePair):
    """Fused-MBConv body: 3x3 conv to the hidden channels, activation, 1x1 conv back."""

    def __init__(self, dim: int, hidden: int, activation: str, pattern: str, level: float) -> None:
        super().__init__(dim, hidden, pattern, level)
        self.fc1 = nn.Conv2d(dim, self.kept, 3, padding=1)
        self.act = make_activation(activation, self.kept, dim=1)
        self.fc2 = nn.Conv2d(self.kept, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block on (B, N, dim) tokens of a grid x grid map."""

    def __init__(self, dim: int, grid: int, head_dim: int, activation: str, layer: LayerConfig) -> None:
        super().__init__()
        self.has_mixer = layer.attention != "none"  # "none": the attention sublayer is skipped
        if self.has_mixer:
            self.norm1 = nn.LayerNorm(dim)
            if layer.attention == "pool":
                self.attn = Pooling(grid)
            else:
                self.attn = Attention(dim, layer.num_heads, head_dim, layer.attention, grid)
        self.norm2 = nn.LayerNorm(dim)
        hidden = hidden_width(dim, layer.mlp_ratio)
        self.mlp = Mlp(dim, hidden, activation, layer.mlp_pattern, layer.mlp_sparsity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_mixer:
            x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """Input: images in [0, 1], (B, C, H, W). Normalisation is part of the model."""

    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        self.arch = arch
        dim, p = arch.embed_dim, arch.patch_size
        self.register_buffer("mean", torch.zeros(arch.in_channels, 1, 1))
        self.register_buffer("std", torch.ones(arch.in_channels, 1, 1))
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
        return self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed

    def classify(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, D) -> (B, num_classes)
        return self.head(self.norm(x).mean(dim=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed(images)
        for block in self.blocks:
            x = block(x)
        return self.classify(x)


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


class Stage(nn.Module):
    def __init__(self, arch: HybridArchConfig, index: int) -> None:
        super().__init__()
        stage, width = arch.stages[index], arch.stages[index].width
        if index > 0:
            self.downsample = Downsample(arch.stages[index - 1].width, width)
        self.conv_blocks = nn.ModuleList(ConvBlock(width, arch.activation, b) for b in stage.conv_blocks)
        grid = arch.resolutions()[index]
        self.attention_blocks = nn.ModuleList(
            Block(width, grid, arch.head_dim, arch.activation, layer) for layer in stage.attention_blocks
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C', H', W')
        if hasattr(self, "downsample"):
            x = self.downsample(x)
        for block in self.conv_blocks:
            x = block(x)
        if len(self.attention_blocks):
            B, C, H, W = x.shape
            tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
            for block in self.attention_blocks:
                tokens = block(tokens)
            x = tokens.transpose(1, 2).reshape(B, C, H, W)
        return x


class HybridNet(nn.Module):
    """Conv stem (``stem_strides`` stride-2 convs) -> stages -> global average pool -> LayerNorm
    -> linear head. Input: images in [0, 1], (B, C, H, W); normalisation is part of the model."""

    def __init__(self, arch: HybridArchConfig) -> None:
        super().__init__()
        self.arch = arch
        self.register_buffer("mean", torch.zeros(arch.in_channels, 1, 1))
        self.register_buffer("std", torch.ones(arch.in_channels, 1, 1))
        width = arch.stages[0].width
        self.stem = nn.Conv2d(arch.in_channels, width, 3, stride=2, padding=1)
        self.stem_norm = nn.GroupNorm(1, width)
        self.stem_more = nn.Sequential(  # further halvings for large inputs (none at 28-32 px)
            *(
                nn.Sequential(
                    nn.Conv2d(width, width, 3, stride=2, padding=1), nn.GroupNorm(1, width), nn.ReLU()
                )
                for _ in range(stem_strides(arch.image_size) - 1)
            )
        )
        self.stages = nn.ModuleList(Stage(arch, i) for i in range(len(arch.stages)))
        self.norm = nn.LayerNorm(arch.stages[-1].width)
        self.head = nn.Linear(arch.stages[-1].width, arch.num_classes)

    def embed(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C0, side, side)
        x = (images - self.mean) / self.std
        return self.stem_more(F.relu(self.stem_norm(self.stem(x))))

    def classify(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.head(self.norm(x.mean(dim=(2, 3))))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed(images)
        for stage in self.stages:
            x = stage(x)
        return self.classify(x)


def static_model(arch: Arch) -> nn.Module:
    """The static network class of either family (uninitialised weights)."""
    return HybridNet(arch) if isinstance(arch, HybridArchConfig) else VisionTransformer(arch)


def build_model(arch: Arch) -> nn.Module:
    """A freshly initialised standalone network for ``arch`` (latency does not need weights)."""
    model = static_model(arch)
    init_weights(model)
    return model


def init_weights(model: nn.Module) -> None:
    for name, param in model.named_parameters():
        if name.endswith("pos_embed") or (param.dim() > 1 and "norm" not in name):
            nn.init.trunc_normal_(param, std=0.02)
        elif name.endswith("bias"):
            nn.init.zeros_(param)

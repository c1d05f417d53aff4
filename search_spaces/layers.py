"""Static building blocks of the vit space: plain PyTorch, what ``extract`` returns and ONNX sees.

Shapes: B batch, N tokens, D embed_dim, h heads, hd head_dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch import ArchConfig, LayerConfig


class TopKReLU(nn.Module):
    """ReLU that keeps only the ``fraction`` largest activations of each token (top-k activation
    sparsity, as in "The Lazy Neuron Phenomenon", Li et al. 2023)."""

    def __init__(self, fraction: float, features: int) -> None:
        super().__init__()
        self.k = max(1, round(features * fraction))  # a constant, so the ONNX graph is static

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        threshold = x.topk(self.k, dim=-1).values[..., -1:]  # (..., 1) the k-th largest
        return F.relu(x) * (x >= threshold)


def make_activation(name: str, features: int) -> nn.Module:
    if name.startswith("topk"):
        return TopKReLU(int(name[4:]) / 100, features)
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


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, activation: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = make_activation(activation, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, arch: ArchConfig, layer: LayerConfig) -> None:
        super().__init__()
        dim, grid = arch.embed_dim, arch.image_size // arch.patch_size
        self.has_mixer = layer.attention != "none"  # "none": the attention sublayer is skipped
        if self.has_mixer:
            self.norm1 = nn.LayerNorm(dim)
            if layer.attention == "pool":
                self.attn = Pooling(grid)
            else:
                self.attn = Attention(dim, layer.num_heads, arch.head_dim, layer.attention, grid)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, arch.mlp_kept(layer), arch.activation)

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
        self.blocks = nn.ModuleList(Block(arch, layer) for layer in arch.layers)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, arch.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed  # (B, N, D)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=1))  # (B, num_classes)


def build_model(arch: ArchConfig) -> VisionTransformer:
    """A freshly initialised standalone network for ``arch`` (latency does not need weights)."""
    model = VisionTransformer(arch)
    init_weights(model)
    return model


def init_weights(model: nn.Module) -> None:
    for name, param in model.named_parameters():
        if name.endswith("pos_embed") or (param.dim() > 1 and "norm" not in name):
            nn.init.trunc_normal_(param, std=0.02)
        elif name.endswith("bias"):
            nn.init.zeros_(param)

"""Static building blocks of the vit space: plain PyTorch, what ``extract`` returns and ONNX sees.

Shapes: B batch, N tokens, D embed_dim, h heads, hd head_dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch import ArchConfig, LayerConfig

ACTIVATION_LAYERS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}


def relu_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Linear attention with a ReLU kernel: O(N hd^2) instead of O(N^2 hd).

    phi(q) (phi(k)^T v) / (phi(q) sum_n phi(k_n)), phi = ReLU (as in SLAB / EfficientViT).
    q, k, v: (B, h, N, hd) -> (B, h, N, hd).
    """
    q, k = F.relu(q), F.relu(k)
    kv = k.transpose(-2, -1) @ v  # (B, h, hd, hd)
    normaliser = q @ k.sum(dim=-2, keepdim=True).transpose(-2, -1)  # (B, h, N, 1)
    return (q @ kv) / (normaliser + 1e-6)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, head_dim: int, kind: str) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.kind = num_heads, head_dim, kind
        self.qkv = nn.Linear(dim, 3 * num_heads * head_dim)  # rows laid out (3, h, hd)
        self.proj = nn.Linear(num_heads * head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, h, N, hd)
        if self.kind == "softmax":
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = relu_linear_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, self.num_heads * self.head_dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, activation: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = ACTIVATION_LAYERS[activation]()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, arch: ArchConfig, layer: LayerConfig) -> None:
        super().__init__()
        dim = arch.embed_dim
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, layer.num_heads, arch.head_dim, layer.attention)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, arch.mlp_hidden(layer), arch.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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

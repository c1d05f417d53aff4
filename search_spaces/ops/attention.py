"""Token mixers: the attention variants and pooling, one class per variant, registered under the
name an architecture gives it (``LayerConfig.attention``, one of ``search_spaces.arch.ATTENTIONS``;
"none" has no mixer). Build one with ``token_mixer(kind, ...)``.

Every attention variant keeps multi-head attention's layout, so the supernet slices them all
alike: ``qkv`` rows are (q heads, k heads, v heads) and ``proj`` maps the output heads back. A
variant overrides only what it changes:

* ``heads``: how many query and key/value heads -- grouped-query (GQA, Ainslie et al. 2023),
  multi-query (MQA, Shazeer 2019), and the "reverse" sparse query attention of Filipek 2025 (SQA:
  Q projection halved, output as wide as the K/V heads);
* ``attend``: how the heads attend -- softmax SDPA, SDPA restricted to a (2r+1)^2 neighbourhood
  on the token grid (local), or ReLU-kernel linear attention (EfficientViT, Cai et al. 2023);
* ``post_mix``: what joins the mixed tokens before ``proj`` -- SLAB's depthwise 3x3 conv on V
  (Guo et al. 2024).

Pooling is PoolFormer's mixer (Yu et al. 2022).

Shapes: B batch, N tokens of a grid x grid map, D width, h heads, hd head_dim.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# kind -> constructor taking (dim, num_heads, head_dim, grid), filled by @register_mixer
TOKEN_MIXERS: dict[str, Callable[[int, int, int, int], nn.Module]] = {}


def register_mixer(kind: str):
    """Register a token mixer constructor ``(dim, num_heads, head_dim, grid) -> module`` as ``kind``."""

    def register(constructor):
        if kind in TOKEN_MIXERS:
            raise ValueError(f"token mixer {kind!r} is registered twice")
        TOKEN_MIXERS[kind] = constructor
        return constructor

    return register


def token_mixer(kind: str, dim: int, num_heads: int, head_dim: int, grid: int) -> nn.Module:
    """A fresh token mixer of ``kind`` on (B, grid * grid, dim) tokens."""
    if kind not in TOKEN_MIXERS:
        raise ValueError(f"unknown token mixer {kind!r}; known: {', '.join(TOKEN_MIXERS)}")
    return TOKEN_MIXERS[kind](dim, num_heads, head_dim, grid)


def attention_heads(kind: str, num_heads: int) -> tuple[int, int]:
    """(query heads, key/value heads) of attention ``kind`` with ``num_heads`` heads."""
    return TOKEN_MIXERS[kind].heads(num_heads)


def relu_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Linear attention with a ReLU kernel: O(N hd^2) instead of O(N^2 hd).

    phi(q) (phi(k)^T v) / (phi(q) sum_n phi(k_n)), phi = ReLU (as in SLAB / EfficientViT).
    q, k, v: (B, h, N, hd) -> (B, h, N, hd).
    """
    q, k = F.relu(q), F.relu(k)
    kv = k.transpose(-2, -1) @ v  # (B, h, hd, hd)
    normaliser = q @ k.sum(dim=-2, keepdim=True).transpose(-2, -1)  # (B, h, N, 1)
    return (q @ kv) / (normaliser + 1e-6)


def local_mask(grid: int, radius: int, device: torch.device | None = None) -> torch.Tensor:
    """(N, N) bool: token i may attend to token j within ``radius`` rows and columns."""
    idx = torch.arange(grid * grid, device=device)
    rows, cols = idx // grid, idx % grid
    near_rows = (rows[:, None] - rows[None, :]).abs() <= radius
    return near_rows & ((cols[:, None] - cols[None, :]).abs() <= radius)


@register_mixer("softmax")
class Attention(nn.Module):
    """Multi-head softmax attention (SDPA), and the layout every attention variant shares.

    Lifecycle: ``__init__`` asks ``heads`` for the head counts and builds ``qkv`` and ``proj``
    (a variant may add modules after them); ``forward`` splits the heads, repeats the fewer side
    (K/V for GQA and MQA, Q for SQA), calls ``attend``, merges the heads and applies ``post_mix``
    then ``proj``.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, grid: int) -> None:
        super().__init__()
        self.head_dim, self.grid = head_dim, grid
        self.num_heads, self.num_kv_heads = self.heads(num_heads)
        self.num_out_heads = max(self.num_heads, self.num_kv_heads)
        self.qkv = nn.Linear(dim, (self.num_heads + 2 * self.num_kv_heads) * head_dim)
        self.proj = nn.Linear(self.num_out_heads * head_dim, dim)

    @classmethod
    def heads(cls, num_heads: int) -> tuple[int, int]:
        """(query heads, key/value heads) for an architecture's ``num_heads``."""
        return num_heads, num_heads

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(B, h_out, N, hd) each -> (B, h_out, N, hd)."""
        return F.scaled_dot_product_attention(q, k, v)

    def post_mix(self, out: torch.Tensor, v: torch.Tensor, batch: int) -> torch.Tensor:
        """Mixed tokens (B, N, h_out * hd), values (B, h_out, N, hd) -> tokens for ``proj``."""
        return out

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
        out = self.attend(q, k, v)
        out = out.transpose(1, 2).reshape(B, N, h_out * hd)
        return self.proj(self.post_mix(out, v, B))


@register_mixer("gqa")
class GroupedQueryAttention(Attention):
    """Pairs of query heads share a K/V head."""

    @classmethod
    def heads(cls, num_heads: int) -> tuple[int, int]:
        return num_heads, max(1, num_heads // 2)


@register_mixer("mqa")
class MultiQueryAttention(Attention):
    """One K/V head for all query heads."""

    @classmethod
    def heads(cls, num_heads: int) -> tuple[int, int]:
        return num_heads, 1


@register_mixer("sqa")
class SparseQueryAttention(Attention):
    """Half as many query heads as K/V heads, each query head shared by a pair of K/V heads."""

    @classmethod
    def heads(cls, num_heads: int) -> tuple[int, int]:
        return max(1, num_heads // 2), num_heads


@register_mixer("local")
class LocalAttention(Attention):
    """Softmax attention within the 3x3 neighbourhood of each token on the grid."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=local_mask(self.grid, 1, q.device))


@register_mixer("linear")
class LinearAttention(Attention):
    """ReLU-kernel linear attention."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return relu_linear_attention(q, k, v)


@register_mixer("slab")
class SlabAttention(LinearAttention):
    """Linear attention plus a depthwise 3x3 conv on V, added before ``proj`` (SLAB)."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, grid: int) -> None:
        super().__init__(dim, num_heads, head_dim, grid)
        width = self.num_kv_heads * head_dim
        self.dwc = nn.Conv2d(width, width, 3, padding=1, groups=width)

    def post_mix(self, out: torch.Tensor, v: torch.Tensor, batch: int) -> torch.Tensor:
        h, hd = self.num_heads, self.head_dim
        grid_v = v.transpose(2, 3).reshape(batch, h * hd, self.grid, self.grid)  # (B, h*hd, H, W)
        return out + self.dwc(grid_v).flatten(2).transpose(1, 2)


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


@register_mixer("pool")
def _pooling(dim: int, num_heads: int, head_dim: int, grid: int) -> Pooling:
    return Pooling(grid)  # no weights, no heads

"""Weight sparsity for SparseLinear and SparseConv2d layers (as in DASS): masks, straight-through
training, extraction.

A conv weight (out, in, kh, kw) is treated as the matrix (out, kh * kw * in) its GEMM uses, so
N:M groups and blocks run along input channels, as for a linear layer.

Patterns (per layer, searchable):
  dense         no sparsity
  unstructured  keep the largest-magnitude (1 - level) share of weights
  2:4, 4:8      N:M -- in every group of M consecutive input weights keep the N largest (level 1 - N/M)
  block         keep the (1 - level) share of 4x4 blocks with the largest L2 norm
  structured    remove whole hidden units (rows of fc1, columns of fc2) by L2 importance:
                extraction gives physically smaller dense layers

Masks are recomputed from the current weights at every forward pass, so the supernet trains with
them active. Gradients reach the pruned weights through a straight-through estimator; for N:M
the SR-STE term decays pruned weights (Zhou et al., 2021, "Learning N:M fine-grained structured
sparse neural networks from scratch").
"""

from __future__ import annotations

import torch

from search_spaces.arch import BLOCK_SIZE, kept, pattern_n_m
from search_spaces.ops import Mlp

SR_STE_DECAY = 2e-4


@torch.no_grad()
def mask_for(weight: torch.Tensor, pattern: str, level: float) -> torch.Tensor:
    """Boolean mask (True = kept) of a 2-D weight (out, in) for an element/block pattern."""
    out_features, in_features = weight.shape
    magnitude = weight.detach().abs().float()
    if pattern == "unstructured":
        keep = kept(weight.numel(), level)
        top = magnitude.flatten().topk(keep).indices
        mask = torch.zeros(weight.numel(), dtype=torch.bool, device=weight.device)
        mask[top] = True
        return mask.view_as(weight)
    if pattern_n_m(pattern):
        n, m = pattern_n_m(pattern)
        groups = magnitude.view(out_features, in_features // m, m)  # (out, in/M, M)
        top = groups.topk(n, dim=-1).indices
        mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
        return mask.view_as(weight)
    if pattern == "block":
        B = BLOCK_SIZE
        blocks = magnitude.view(out_features // B, B, in_features // B, B)
        norms = blocks.pow(2).sum(dim=(1, 3)).flatten()  # (out/B * in/B,)
        keep = norms.topk(kept(norms.numel(), level)).indices
        block_mask = torch.zeros_like(norms, dtype=torch.bool)
        block_mask[keep] = True
        block_mask = block_mask.view(out_features // B, 1, in_features // B, 1)
        return block_mask.expand(-1, B, -1, B).reshape(out_features, in_features)
    raise ValueError(f"no element mask for pattern {pattern!r}")


class _MaskedWeight(torch.autograd.Function):
    """Forward: weight * mask. Backward: straight through, plus decay * pruned weights (SR-STE)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, mask: torch.Tensor, decay: float) -> torch.Tensor:
        ctx.save_for_backward(weight, mask)
        ctx.decay = decay
        return weight * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        weight, mask = ctx.saved_tensors
        if ctx.decay:
            grad = grad + ctx.decay * (~mask) * weight
        return grad, None, None


def apply_mask(weight: torch.Tensor, pattern: str, level: float) -> torch.Tensor:
    mask = mask_for(weight, pattern, level)
    decay = SR_STE_DECAY if pattern_n_m(pattern) else 0.0
    if not torch.is_grad_enabled() or not weight.requires_grad:
        return weight * mask
    return _MaskedWeight.apply(weight, mask, decay)


def _as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """(out, in) as is; (out, in, kh, kw) -> (out, kh * kw * in), input channels innermost."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1) if weight.dim() == 4 else weight


def _from_matrix(matrix: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if like.dim() == 2:
        return matrix
    out, in_, kh, kw = like.shape
    return matrix.view(out, kh, kw, in_).permute(0, 3, 1, 2)


def masked(weight: torch.Tensor, pattern: str, level: float) -> torch.Tensor:
    """A linear or conv weight with the pattern's mask applied (straight-through when training)."""
    return _from_matrix(apply_mask(_as_matrix(weight), pattern, level), weight)


def to_semi_structured(model: torch.nn.Module, arch) -> torch.nn.Module:
    """Give the 2:4 layers of an extracted CUDA model torch's semi-structured sparse weights.

    Needs a CUDA device and fp16/bf16 weights (the model is cast to bf16). Measured at this
    space's sizes on an H100 these kernels were slower than dense (BENCHMARKS.md): only use them
    where a measurement says they help.
    """
    if not torch.cuda.is_available():
        raise ValueError("2:4 semi-structured kernels need a CUDA device")
    return semi_structured_weights(model.to("cuda", torch.bfloat16))


def semi_structured_weights(model: torch.nn.Module) -> torch.nn.Module:
    """Replace the weights of every 2:4 Mlp of a CUDA half-precision model by torch's
    semi-structured sparse tensors (masking them 2:4 first: a no-op for extracted weights)."""
    from torch.sparse import to_sparse_semi_structured

    for mlp in model.modules():
        if isinstance(mlp, Mlp) and mlp.pattern == "2:4":
            for linear in (mlp.fc1, mlp.fc2):
                weight = masked(linear.weight.detach(), "2:4", 0.5)
                linear.weight = torch.nn.Parameter(to_sparse_semi_structured(weight), requires_grad=False)
    return model


def sparsify_pair(
    fc1_weight: torch.Tensor,  # (hidden, dim) or (hidden, dim, kh, kw)
    fc1_bias: torch.Tensor,  # (hidden,)
    fc2_weight: torch.Tensor,  # (dim, hidden) or (dim, hidden, 1, 1)
    pattern: str,
    level: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A SparsePair's weights under the pattern: masked, or (structured) the important hidden
    units / channels only (L2 norm of their fc1 row times their fc2 column)."""
    if pattern == "dense":
        return fc1_weight, fc1_bias, fc2_weight
    if pattern == "structured":
        with torch.no_grad():
            rows = fc1_weight.float().flatten(1).norm(dim=1)
            columns = fc2_weight.float().transpose(0, 1).flatten(1).norm(dim=1)
            units = (rows * columns).topk(kept(len(rows), level)).indices.sort().values
        return fc1_weight[units], fc1_bias[units], fc2_weight[:, units]
    return masked(fc1_weight, pattern, level), fc1_bias, masked(fc2_weight, pattern, level)

"""Batched data augmentation on the training device: per-sample random translations and
horizontal flips of a whole batch in a few tensor ops, so a GPU never waits for the host.

(torchvision's v2 transforms draw one set of parameters per call, i.e. per batch when given a
batch tensor; per-sample GPU augmentation would need kornia as another dependency for two ops.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_translate(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) shifted by up to ``pad`` pixels in each direction, the
    uncovered border zero (a random crop of the zero-padded image, as in the CIFAR recipes)."""
    if pad <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=generator)
    rows = torch.arange(h, device=x.device)[None, :] + dy[:, None]  # (N, H)
    cols = torch.arange(w, device=x.device)[None, :] + dx[:, None]  # (N, W)
    x = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * pad))
    return x.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) mirrored left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)

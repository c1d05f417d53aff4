"""Batched data augmentation on the training device: per-sample random translations and
horizontal flips of a whole batch in a few tensor ops, so a GPU never waits for the host.

(torchvision's v2 transforms draw one set of parameters per call, i.e. per batch when given a
batch tensor; per-sample GPU augmentation would need kornia as another dependency for two ops.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _draws(n: int, part: tuple[int, int] | None) -> tuple[int, slice]:
    """How many values to draw and which of them are ``x``'s: ``part=(start, batch)`` says ``x``
    is rows ``start:start+n`` of a batch of ``batch`` (one rank's share of a global batch, so every
    image gets the draw it would get in one process)."""
    if part is None:
        return n, slice(0, n)
    start, batch = part
    return batch, slice(start, start + n)


def random_translate(
    x: torch.Tensor, pad: int, generator: torch.Generator | None = None, part: tuple[int, int] | None = None
) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) shifted by up to ``pad`` pixels in each direction, the
    uncovered border zero (a random crop of the zero-padded image, as in the CIFAR recipes)."""
    if pad <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    count, mine = _draws(n, part)
    dy = torch.randint(0, 2 * pad + 1, (count,), device=x.device, generator=generator)[mine]
    dx = torch.randint(0, 2 * pad + 1, (count,), device=x.device, generator=generator)[mine]
    rows = torch.arange(h, device=x.device)[None, :] + dy[:, None]  # (N, H)
    cols = torch.arange(w, device=x.device)[None, :] + dx[:, None]  # (N, W)
    x = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * pad))
    return x.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def random_flip(
    x: torch.Tensor, generator: torch.Generator | None = None, part: tuple[int, int] | None = None
) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) mirrored left-right with probability 1/2."""
    count, mine = _draws(x.shape[0], part)
    flip = torch.rand(count, device=x.device, generator=generator)[mine] < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)

"""Arithmetic the architecture families share: weight sparsity patterns (their groups, levels
and kept counts), hidden widths, and the sides of a hybrid's stages. No torch, no configs: the
architecture records (search_spaces.arch), the ops and the spaces all count with it."""

from __future__ import annotations

import math

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


def hidden_width(width: int, ratio: float) -> int:
    """Hidden width of an MLP or conv block expanding ``width`` by ``ratio`` (before pruning)."""
    return int(width * ratio)


STEM_SIDE = 16  # a hybrid's stem brings the input near this side, whatever the image size


def stem_strides(image_size: int) -> int:
    """How many stride-2 convs a hybrid's stem has: one at 28 or 32 px, two at 64, four at 224,
    so the first stage runs near ``STEM_SIDE`` x ``STEM_SIDE`` on any data."""
    return max(1, round(math.log2(max(1, image_size) / STEM_SIDE)))


def stage_resolutions(image_size: int, num_stages: int, pool: bool = False) -> list[int]:
    """Side of each hybrid stage's feature map: the stem halves the input (``stem_strides``
    times, once more with its max pool), each later stage halves it again."""
    sides = [image_size]
    for _ in range(stem_strides(image_size) + pool):
        sides = [-(-sides[0] // 2)]
    while len(sides) < num_stages:
        sides.append(-(-sides[-1] // 2))
    return sides

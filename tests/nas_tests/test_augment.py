"""Batched augmentation: per-sample shifts and flips that keep every pixel's value."""

import torch

from nas.augment import random_flip, random_translate


def test_translate_shifts_each_image_by_at_most_pad_and_is_seeded():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).reshape(2, 1, 6, 6).repeat(50, 1, 1, 1)
    out = random_translate(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    same = random_translate(x, 2, torch.Generator().manual_seed(0))
    assert torch.equal(out, same)
    shifts = set()
    for original, moved in zip(x, out):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(_shift(original, dy, dx), moved)
        ]
        assert found, "not a translation of the input"
        shifts.add(found[0])
    assert len(shifts) > 10  # per image, not one shift for the batch


def _shift(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    padded = torch.nn.functional.pad(image, (2, 2, 2, 2))
    h, w = image.shape[-2:]
    return padded[..., 2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w]


def test_flip_mirrors_about_half_of_the_images():
    x = torch.rand(400, 3, 5, 7)
    out = random_flip(x, torch.Generator().manual_seed(1))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 150 < sum(flipped) < 250

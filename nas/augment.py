"""Batched data augmentation on the training device: per-sample random translations and
horizontal flips of a whole batch in a few tensor ops, so a GPU never waits for the host; and
what the recipes' ``flip: auto`` / ``translate: auto`` are for a dataset (``auto_augmentation``:
decided from the images themselves, recorded with the study).

(torchvision's v2 transforms draw one set of parameters per call, i.e. per batch when given a
batch tensor; per-sample GPU augmentation would need kornia as another dependency for two ops.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from nas.data import ImageData

R = TypeVar("R")


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


# -- what ``auto`` means for a dataset ---------------------------------------------------------

AUTO = "auto"
GRAY_TOLERANCE = 1.0  # mean |R - G| + |G - B| in uint8 levels under which RGB images are gray
COLOUR_SAMPLE = 1024  # images looked at to decide


@dataclass(frozen=True)
class Augmentation:
    """The augmentation ``auto`` stands for on one dataset: shifts of up to an eighth of the side
    (4 px at 32 px, as the CIFAR recipes), and left-right flips for natural RGB images (not for
    grayscale ones: digits, text, Fashion-MNIST's objects); a dataset's ``flip_safe`` overrides the
    colour rule. ``why`` says what decided the flips."""

    flip: bool
    translate: int
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Augmentation:
        return cls(bool(data["flip"]), int(data["translate"]), str(data.get("why", "")))


def is_grayscale(data: ImageData) -> bool:
    """Whether the images are gray, judged from the pixels (an RGB file of a gray image is gray):
    one channel, or channels that agree on a seeded sample of the images."""
    if data.in_channels == 1:
        return True
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:COLOUR_SAMPLE]
    chosen = order.sort().values
    images = data.subset(chosen).images if data.streamed else data.images[chosen]
    x = images.to(torch.int16)
    difference = (x[:, 1:] - x[:, :-1]).abs().sum(1).float().mean() if len(x) else torch.tensor(0.0)
    return float(difference) < GRAY_TOLERANCE


def auto_augmentation(data: ImageData) -> Augmentation:
    """What ``flip: auto`` and ``translate: auto`` are for ``data`` (see ``Augmentation``)."""
    translate = max(1, round(data.image_size / 8))
    declared = getattr(data, "flip_safe", None)
    if declared is not None:
        return Augmentation(bool(declared), translate, f"dataset.flip_safe={str(declared).lower()}")
    if is_grayscale(data):
        return Augmentation(False, translate, "grayscale images")
    return Augmentation(True, translate, "natural RGB images")


def resolve_augmentation(recipe: R, auto: Augmentation) -> R:
    """``recipe`` (a supernet or retrain recipe) with its ``auto`` flip and translate replaced by
    ``auto``'s values; explicit values stay."""
    changes: dict[str, Any] = {}
    if recipe.flip == AUTO:
        changes["flip"] = auto.flip
    if recipe.translate == AUTO:
        changes["translate"] = auto.translate
    return dataclasses.replace(recipe, **changes)


def describe_augmentation(group: str, given: Any, resolved: Any, auto: Augmentation) -> str:
    """One line for a run's header, e.g. ``supernet augmentation: flip on, translate 4 px (auto:
    natural RGB images)``; values set explicitly are marked so, with what auto would give."""
    parts = []
    for key, text in (("flip", "on" if resolved.flip else "off"), ("translate", f"{resolved.translate} px")):
        parts.append(f"{key} {text}" + ("" if getattr(given, key) == AUTO else " (set)"))
    if given.flip == AUTO and given.translate == AUTO:
        return f"{group} augmentation: {', '.join(parts)} (auto: {auto.why})"
    would = f"flip {'on' if auto.flip else 'off'}, translate {auto.translate} px"
    return f"{group} augmentation: {', '.join(parts)} (auto would be {would}: {auto.why})"


def check_augmentation(group: str, recipe: Any) -> None:
    """``flip`` is true, false or auto; ``translate`` an integer >= 0 or auto (ValueError naming
    ``group.key``)."""
    if not (isinstance(recipe.flip, bool) or recipe.flip == AUTO):
        raise ValueError(f"{group}.flip: expected true, false or auto, got {recipe.flip!r}")
    translate = recipe.translate
    if translate != AUTO and (isinstance(translate, bool) or not isinstance(translate, int) or translate < 0):
        raise ValueError(f"{group}.translate: expected an integer >= 0 or auto, got {translate!r}")


def require_resolved(group: str, recipe: Any) -> None:
    """Training needs numbers: ``auto`` is resolved from the dataset first (resolve_augmentation)."""
    if AUTO in (recipe.flip, recipe.translate):
        raise ValueError(f"{group}: flip/translate 'auto' must be resolved from the dataset before training")

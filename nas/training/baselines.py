"""The timm glue of ``nas train``: the baselines group (timm models a user would otherwise pick),
``timm_model`` (one built for the dataset), ``Normalized`` (behind the dataset's normalisation,
as the found models are) and ``SeparableUpsample`` (a CUDA speed fix some timm models need).

Not ``nas.timm_models``, which goes the other way: it registers found models as timm models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import timm
import torch
from torch import nn

from infra.errors import UserError
from nas.data import ImageData


@dataclass(frozen=True)
class Baselines:
    """The timm models of conf group ``baselines``: name -> extra timm.create_model arguments."""

    models: dict[str, dict[str, Any]]

    def __post_init__(self) -> None:
        unknown = [name for name in self.models if not timm.is_model(name)]
        if unknown:
            raise ValueError(f"baselines.models: not timm models: {', '.join(unknown)}")


def timm_model(name: str, data: ImageData, **kwargs: Any) -> nn.Module:
    """timm's ``name`` built for the dataset's classes, channels and (where the model takes it)
    image size, untrained. One-line errors for an unknown name or a model that cannot take the
    input."""
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:5]
        raise UserError(f"timm: no timm model {name!r}" + (f" (e.g. {', '.join(close)})" if close else ""))
    args = {"pretrained": False, "num_classes": data.num_classes, "in_chans": data.in_channels} | kwargs
    try:
        try:
            model = timm.create_model(name, img_size=data.image_size, **args)
        except TypeError:  # a model without an img_size argument (CNNs): any size goes
            model = timm.create_model(name, **args)
        _faster_upsampling(model)
        with torch.no_grad():
            model.eval()(torch.zeros(1, data.in_channels, data.image_size, data.image_size))
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"timm: {name} cannot take {data.in_channels}x{data.image_size}x{data.image_size} inputs: {first}"
        ) from None
    return model.train()


def normalized_timm_model(
    name: str, data: ImageData, kwargs: dict[str, Any], mean: torch.Tensor, std: torch.Tensor
) -> nn.Module:
    """``timm_model(name, data, **kwargs)`` behind the normalisation by ``mean`` and ``std``: it
    takes [0, 1] images, as the found architectures do."""
    return Normalized(timm_model(name, data, **kwargs), mean, std)


class Normalized(nn.Module):
    """A model behind the dataset's normalisation, so it takes [0, 1] images as the found
    architectures do (they normalise inside)."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.view(-1, 1, 1).clone())
        self.register_buffer("std", std.view(-1, 1, 1).clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) / self.std)


class SeparableUpsample(nn.Upsample):
    """``nn.Upsample`` (bilinear) on CUDA as two small matrix products, in float32 as autocast
    runs the original: the same linear map, another kernel. PyTorch's NCHW bilinear kernel gives
    each output pixel one thread that loops over batch and channels, so on the tiny maps of
    28-32 px inputs it runs nearly serially: in efficientformerv2_s0 at 28 px (1x1 -> 2x2 maps),
    batch 512, it took 54.5 of a training step's 74.7 ms on an H200 (BENCHMARKS.md), and the
    channels-last kernel is not chosen for 1x1 maps. On CPU and in export: the original op."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cache: dict[tuple, torch.Tensor] = {}

    def _weights(self, size: int, out: int | None, scale: float | None, device) -> torch.Tensor:
        """(out, size): row i holds output i's weights over the input positions; made once per
        shape and device (a training step meets the same few)."""
        key = (size, out, scale, str(device))
        if key not in self._cache:
            self._cache[key] = self._interpolated_eye(size, out, scale, device)
        return self._cache[key]

    def _interpolated_eye(self, size: int, out: int | None, scale: float | None, device) -> torch.Tensor:
        eye = torch.eye(size, device=device).unsqueeze(0)  # (1, channels=size, length=size)
        return nn.functional.interpolate(
            eye,
            size=out,
            scale_factor=scale,
            mode="linear",
            align_corners=self.align_corners,
            recompute_scale_factor=self.recompute_scale_factor,
        )[0].T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_cuda or x.dim() != 4 or torch.onnx.is_in_onnx_export():
            return super().forward(x)
        with torch.autocast("cuda", enabled=False):
            return self.separable(x.float())

    def separable(self, x: torch.Tensor) -> torch.Tensor:
        """The matrix form, on any device (the tests compare it with the original op)."""
        size = self.size if isinstance(self.size, tuple | list) or self.size is None else (self.size,) * 2
        scale = self.scale_factor
        scale = scale if isinstance(scale, tuple | list) or scale is None else (scale, scale)
        h, w = x.shape[-2:]
        rows = self._weights(h, size and size[0], scale and scale[0], x.device)
        cols = self._weights(w, size and size[1], scale and scale[1], x.device)
        return torch.einsum("oh,nchw,pw->ncop", rows, x, cols)


def _faster_upsampling(model: nn.Module) -> nn.Module:
    """Swap the model's bilinear ``nn.Upsample`` modules for ``SeparableUpsample``."""
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if type(child) is nn.Upsample and child.mode == "bilinear":
                faster = SeparableUpsample(
                    size=child.size,
                    scale_factor=child.scale_factor,
                    mode=child.mode,
                    align_corners=child.align_corners,
                    recompute_scale_factor=child.recompute_scale_factor,
                )
                setattr(parent, child_name, faster)
    return model

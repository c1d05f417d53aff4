"""Found models as timm models: ``timm.create_model("nas_<study>_trial<N>")`` after registering
a ``nas export`` folder, so users keep their timm training and inference scripts.

    from nas.timm_models import register_export
    name = register_export("export/vit-fashion_mnist-trial12")    # -> "nas_vit_fashion_mnist_trial12"
    model = timm.create_model(name, pretrained=True)               # the exported weights
    model = timm.create_model(name, num_classes=100)               # a new head, trunk weights kept

The model takes float images in [0, 1] (it normalises inside, with the training data's
statistics), as the exported ONNX does: ``pretrained_cfg`` says so (mean 0, std 1).
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from infra.errors import UserError
from search_spaces.arch import arch_from_dict
from search_spaces.networks import build_model


def timm_name(manifest: dict) -> str:
    """``nas_<study>_trial<N>``, lower case, letters, digits and underscores only."""
    study = re.sub(r"[^0-9a-z]+", "_", str(manifest["study"]).lower()).strip("_")
    return f"nas_{study}_trial{manifest['trial']}"


def register_export(folder: str | Path, name: str | None = None) -> str:
    """Register the export in ``folder`` with timm's model registry; returns its model name."""
    import timm
    import yaml
    from timm.models import register_model

    folder = Path(folder)
    try:
        manifest = json.loads((folder / "export.json").read_text())
        arch = arch_from_dict(yaml.safe_load((folder / "arch.yaml").read_text()))
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{folder}: not a nas export ({e})") from None
    weights = folder / "model.pt"
    name = name or timm_name(manifest)
    cfg = {
        "file": str(weights.resolve()),
        "num_classes": arch.num_classes,
        "input_size": tuple(arch.input_shape),
        "mean": (0.0,) * arch.in_channels,  # the model normalises inside: it takes [0, 1] images
        "std": (1.0,) * arch.in_channels,
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "first_conv": "",
        "classifier": "head",
        "architecture": name,
        "tag": "nas",
        "nas": {"study": manifest["study"], "trial": manifest["trial"], "arch_key": manifest["arch_key"]},
    }

    def create(pretrained: bool = False, num_classes: int | None = None, **kwargs) -> nn.Module:
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(key, None)
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if kwargs.get("in_chans") == arch.in_channels:
            del kwargs["in_chans"]
        if kwargs:
            raise TypeError(f"{name} takes no arguments {sorted(kwargs)} (its architecture is fixed)")
        classes = arch.num_classes if num_classes is None else num_classes
        model = build_model(dataclasses.replace(arch, num_classes=classes))
        if pretrained:
            if not weights.is_file():
                raise FileNotFoundError(f"{weights}: this export has no weights (exported before model.pt)")
            state = torch.load(weights, map_location="cpu", weights_only=True)
            if classes != arch.num_classes:  # a new head: keep the trunk's weights only
                state = {k: v for k, v in state.items() if not k.startswith("head.")}
            model.load_state_dict(state, strict=classes == arch.num_classes)
        model.pretrained_cfg = model.default_cfg = dict(cfg, num_classes=classes)
        return model.eval() if pretrained else model

    create.__name__ = create.__qualname__ = name
    with warnings.catch_warnings():  # registering the same name again: the newest export wins
        warnings.simplefilter("ignore")
        register_model(create)
    assert timm.is_model(name)
    return name

"""Load a shipped space's YAML without Hydra (the GPU machine has torch but not hydra/optuna)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load_space(name: str, image_size: int = 28, in_channels: int = 1, num_classes: int = 10):
    """The space of ``conf/space/<name>.yaml`` for the embedded dataset's input (1x28x28, 10 classes)."""
    config = yaml.safe_load((REPO / "conf" / "space" / f"{name}.yaml").read_text())
    module, _, cls = config.pop("_target_").rpartition(".")
    space_cls = getattr(importlib.import_module(module), cls)
    return space_cls(**config, image_size=image_size, in_channels=in_channels, num_classes=num_classes)


def parse_settings(pairs: list[str]) -> dict:
    """``key=value`` pairs, values read as YAML (``runs=50``, ``device=cuda``)."""
    return {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in pairs)}

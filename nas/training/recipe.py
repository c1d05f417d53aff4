"""How a stand-alone model is trained (conf group ``retrain``): timm's optimizer and scheduler
names, label smoothing, Mixup/CutMix, model EMA, augmentation and the seed. Part of the result's
key: another recipe is another result."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

import timm.optim

from nas.augment import check_augmentation
from nas.supernet_training import check_ranges

SCHEDULERS = ("cosine", "tanh", "step", "multistep", "plateau", "poly")  # create_scheduler_v2's
_NOT_IN_KEY = {"channels_last", "cuda_graphs"}  # how a training runs, not what it trains


@dataclass(frozen=True)
class RetrainRecipe:
    """How a stand-alone model is trained (conf/retrain/*.yaml). Part of the result's key."""

    epochs: int = 30
    batch_size: int = 256
    opt: str = "adamw"  # any timm optimizer name (create_optimizer_v2)
    lr: float = 2e-3
    weight_decay: float = 0.05
    sched: str = "cosine"  # any timm scheduler name (create_scheduler_v2), stepped per update
    warmup_epochs: int = 2
    label_smoothing: float = 0.1
    mixup: float = 0.0  # Mixup alpha (0: off)
    cutmix: float = 0.0  # CutMix alpha (0: off)
    ema_decay: float = 0.0  # model EMA (ModelEmaV3) decay, e.g. 0.999 (0: off); evaluated when on
    # Pixels of random shift (GPU-side, as in supernet training); random horizontal flips.
    # "auto": chosen from the dataset, as the search chose (nas.augment.auto_augmentation).
    translate: int | Literal["auto"] = 0
    flip: bool | Literal["auto"] = False
    seed: int = 0
    # Model and batches in channels-last memory order (timm's --channels-last): on CUDA, cuDNN's
    # NHWC kernels for depthwise and small convolutions. How the training runs, not what it
    # trains, so not part of the key.
    channels_last: bool = False
    # CUDA: forward + backward captured once as a CUDA graph and replayed (nas.training.graphs);
    # the same computation, launched at once instead of kernel by kernel: much faster for one
    # training alone, not for several sharing a GPU (BENCHMARKS.md). Not part of the key.
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        check_ranges(
            "retrain",
            self,
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            ("mixup", self.mixup >= 0, ">= 0"),
            ("cutmix", self.cutmix >= 0, ">= 0"),
            ("ema_decay", 0 <= self.ema_decay < 1, "in [0, 1)"),
        )
        check_augmentation("retrain", self)
        if self.opt.lower() not in timm.optim.list_optimizers():
            raise ValueError(
                f"retrain.opt: {self.opt!r} is not a timm optimizer (timm.optim.list_optimizers())"
            )
        if self.sched not in SCHEDULERS:
            raise ValueError(f"retrain.sched: {self.sched!r} is not one of {', '.join(SCHEDULERS)}")

    def key(self) -> str:
        """The recipe's part of a result's key: a digest of every field that changes what is
        trained (stored studies and cached runs are found by it: it must never change). Taken of
        a resolved recipe: the key holds the flip and translate used, never "auto"."""
        fields = {k: v for k, v in asdict(self).items() if k not in _NOT_IN_KEY}
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]

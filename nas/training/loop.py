"""One stand-alone training run (``retrain``) with timm's training utilities, and its result.

The recipe is timm's: ``create_optimizer_v2``, ``create_scheduler_v2`` (stepped per update),
``Mixup``/CutMix with ``SoftTargetCrossEntropy``, ``LabelSmoothingCrossEntropy``, ``ModelEmaV3``;
on CUDA bf16 autocast and forward + backward replayed as a CUDA graph (``nas.training.graphs``).
The run checkpoints atomically and resumes after a kill exactly where it stopped
(``nas.resumable``: data order and augmentation are seeded per epoch and step, as in supernet
training); its folder then holds ``model.pt`` and ``result.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch import nn

from infra.files import atomic_path
from latency_models.flops import count_params
from nas.augment import random_flip, random_translate, require_resolved
from nas.checkpoint import save_atomic
from nas.data import ImageData
from nas.records import file_safe
from nas.resumable import ResumableLoop
from nas.supernet_training import evaluate, resolve_device
from nas.training.graphs import TrainingForward
from nas.training.recipe import RetrainRecipe

RESULT, CHECKPOINT, WEIGHTS = "result.json", "checkpoint.pt", "model.pt"  # a run folder's files


@dataclass
class Retrained:
    """What one stand-alone training run gave (also stored with the study)."""

    val_top1: float
    test_top1: float | None
    epochs: int  # epochs trained (fewer than the recipe's when a scheduler stopped it early)
    train_seconds: float
    params: int
    recipe: dict[str, Any]
    init: str
    device: str
    resumed: bool
    stopped_early: bool = False  # a Tune scheduler (ASHA) stopped it: figures of its last epoch
    started_at: float = 0.0  # wall clock (time.time()) of this run's start and end
    finished_at: float = 0.0
    graphed: bool = False  # forward + backward replayed as a CUDA graph (retrain.cuda_graphs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, run_dir: Path) -> Retrained | None:
        """The finished result in ``run_dir``, or None."""
        final = run_dir / RESULT
        return cls(**json.loads(final.read_text())) if final.exists() else None


def run_dir_for(cache_dir: str | Path, data: ImageData, name: str, recipe: RetrainRecipe, init: str) -> Path:
    """Where a run's checkpoint and result live: one folder per (data, model, recipe, init)."""
    return Path(cache_dir) / "retrain" / f"{file_safe(data.name)}-{file_safe(name)}-{init}-{recipe.key()}"


def _criterion(recipe: RetrainRecipe, num_classes: int) -> tuple[Mixup | None, nn.Module]:
    """The recipe's Mixup/CutMix (or None) and the loss that goes with it."""
    if recipe.mixup > 0 or recipe.cutmix > 0:
        mixup = Mixup(
            mixup_alpha=recipe.mixup,
            cutmix_alpha=recipe.cutmix,
            label_smoothing=recipe.label_smoothing,
            num_classes=num_classes,
        )
        return mixup, SoftTargetCrossEntropy()
    if recipe.label_smoothing > 0:
        return None, LabelSmoothingCrossEntropy(smoothing=recipe.label_smoothing)
    return None, nn.CrossEntropyLoss()


def retrain(
    model: nn.Module,
    data: ImageData,
    train_idx: torch.Tensor,
    val_idx: torch.Tensor,
    recipe: RetrainRecipe,
    run_dir: Path,
    device: str = "auto",
    init: str = "scratch",
    checkpoint_every_s: float = 30.0,
    report: Callable[[int, float], None] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> Retrained:
    """Train ``model`` (it takes uint8-range images scaled to [0, 1]) on ``train_idx``, evaluate
    it on ``val_idx`` after every epoch (``report(epoch, val_top1)``: e.g. a Tune scheduler, which
    may stop the run by raising) and on the dataset's own test split at the end. Checkpoints in
    ``run_dir`` and resumes from there; a finished run is read back, not trained again."""
    require_resolved("retrain", recipe)
    dev = resolve_device(device)
    run_dir.mkdir(parents=True, exist_ok=True)
    finished = Retrained.read(run_dir)
    if finished is not None:
        finished.resumed = True
        return finished
    torch.manual_seed(recipe.seed)
    memory = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model = model.to(dev, memory_format=memory).train()
    if dev.type == "cuda":  # fixed batch shapes: let cuDNN time its algorithms once (as timm's train.py)
        torch.backends.cudnn.benchmark = True
    source = data.subset(train_idx).to(dev) if not data.streamed else data
    indices = torch.arange(len(train_idx)) if not data.streamed else train_idx
    batch_size = min(recipe.batch_size, len(indices))
    steps_per_epoch = len(indices) // batch_size
    total = steps_per_epoch * recipe.epochs
    optimizer = create_optimizer_v2(model, opt=recipe.opt, lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=recipe.sched,
        num_epochs=recipe.epochs,
        warmup_epochs=recipe.warmup_epochs,
        warmup_lr=recipe.lr * 1e-2,
        min_lr=recipe.lr * 1e-2,
        step_on_epochs=False,
        updates_per_epoch=steps_per_epoch,
    )
    mixup, criterion = _criterion(recipe, data.num_classes)
    ema = ModelEmaV3(model, decay=recipe.ema_decay) if recipe.ema_decay > 0 else None
    state = {"model": model, "optimizer": optimizer} | ({"ema": ema} if ema is not None else {})
    loop = ResumableLoop(run_dir / CHECKPOINT, state, recipe.seed, steps_per_epoch, total, checkpoint_every_s)
    loop.resume(dev)
    forward = TrainingForward(model, dev, recipe.cuda_graphs)  # bf16 autocast on CUDA
    val = data.subset(val_idx)
    scored = ema.module if ema is not None else model
    started_at = time.time()
    epochs_done = loop.step // steps_per_epoch
    with loop.running():
        for _, batch_indices in loop.epochs(indices, batch_size):
            for x, y in source.batches(batch_indices, batch_size, dev, drop_last=True):
                generator = torch.Generator(device=dev).manual_seed(loop.step_seed())
                x = random_translate(x, recipe.translate, generator)
                x = random_flip(x, generator) if recipe.flip else x
                x = x.float().div_(255).contiguous(memory_format=memory)
                if mixup is not None:  # Mixup draws from numpy's and torch's global generators
                    torch.manual_seed(loop.step_seed())
                    np.random.seed(loop.step_seed() % 2**32)
                    x, y = mixup(x, y)
                loss = criterion(forward(x).float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                loop.step += 1
                scheduler.step_update(num_updates=loop.step)
                if ema is not None:
                    ema.update(model, step=loop.step)
                if progress is not None and loop.reads_loss():
                    progress(loop.step, total, loop.checked(loss, "retrain", "lower retrain.lr"))
                loop.save_when_due()
            epochs_done = loop.step // steps_per_epoch
            if report is not None and loop.step < total:  # the last epoch reports once its result is written
                loop.save()  # a scheduler that stops the run here finds it checkpointed
                report(epochs_done, evaluate(scored, None, val.images, val.labels, batch_size=1000))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    train_seconds = round(loop.elapsed_s + loop.seconds(), 1)
    test = data.test.subset(torch.arange(len(data.test))) if data.test is not None else None
    result = Retrained(
        val_top1=evaluate(scored, None, val.images, val.labels),
        test_top1=evaluate(scored, None, test.images, test.labels) if test is not None else None,
        epochs=epochs_done,
        train_seconds=train_seconds,
        params=count_params(scored),
        recipe=asdict(recipe),
        init=init,
        device=str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        resumed=loop.resumed,
        started_at=started_at,
        finished_at=time.time(),
        graphed=forward.graphed,
    )
    save_atomic(scored.state_dict(), run_dir / WEIGHTS)
    with atomic_path(run_dir / RESULT) as tmp:
        Path(tmp).write_text(json.dumps(result.to_dict(), indent=1))
    loop.finished()
    if report is not None:
        report(epochs_done, result.val_top1)
    return result

"""``nas train``: train one architecture on its own, with timm's training utilities.

A candidate's search figure is its top-1 with weights inherited from the supernet; this trains
it stand-alone (from scratch, or fine-tuned from those inherited weights with ``init=inherit``)
so the two can be compared, and trains the timm models a user would otherwise pick with the same
recipe. The recipe is timm's: ``create_optimizer_v2``, ``create_scheduler_v2`` (stepped per
update), ``Mixup``/CutMix with ``SoftTargetCrossEntropy``, ``LabelSmoothingCrossEntropy``,
``ModelEmaV3``; bf16 autocast on CUDA. Training checkpoints atomically and resumes after a kill
exactly where it stopped (data order and augmentation are seeded per epoch and step).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from infra.errors import UserError
from infra.files import atomic_path
from latency_models.flops import count_params
from nas import status
from nas.augment import random_flip, random_translate
from nas.checkpoint import load_checkpoint, save_atomic
from nas.data import ImageData
from nas.records import RunRecord, file_safe
from nas.train import EPOCH_SEED_STRIDE, STEP_SEED_STRIDE, check_ranges, evaluate, resolve_device

PROGRESS_EVERY = 50  # steps between progress updates


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
    translate: int = 0  # pixels of random shift (GPU-side, as in supernet training)
    flip: bool = False
    seed: int = 0
    # Model and batches in channels-last memory order (timm's --channels-last): on CUDA, cuDNN's
    # NHWC kernels for depthwise and small convolutions. How the training runs, not what it
    # trains, so not part of the key.
    channels_last: bool = False

    def __post_init__(self) -> None:
        check_ranges(
            "retrain",
            self,
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            ("mixup", self.mixup >= 0, ">= 0"),
            ("cutmix", self.cutmix >= 0, ">= 0"),
            ("ema_decay", 0 <= self.ema_decay < 1, "in [0, 1)"),
            ("translate", self.translate >= 0, ">= 0"),
        )
        import timm.optim
        import timm.scheduler

        if self.opt.lower() not in timm.optim.list_optimizers():
            raise ValueError(
                f"retrain.opt: {self.opt!r} is not a timm optimizer (timm.optim.list_optimizers())"
            )
        known = ("cosine", "tanh", "step", "multistep", "plateau", "poly")
        if self.sched not in known:
            raise ValueError(f"retrain.sched: {self.sched!r} is not one of {', '.join(known)}")

    def key(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if k not in _NOT_IN_KEY}
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


_NOT_IN_KEY = {"channels_last"}  # how a training runs, not what it trains


@dataclass(frozen=True)
class Baselines:
    """The timm models of conf group ``baselines``: name -> extra timm.create_model arguments."""

    models: dict[str, dict[str, Any]]

    def __post_init__(self) -> None:
        import timm

        unknown = [name for name in self.models if not timm.is_model(name)]
        if unknown:
            raise ValueError(f"baselines.models: not timm models: {', '.join(unknown)}")


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


def timm_model(name: str, data: ImageData, **kwargs: Any) -> nn.Module:
    """timm's ``name`` built for the dataset's classes, channels and (where the model takes it)
    image size, untrained. One-line errors for an unknown name or a model that cannot take the
    input."""
    import timm

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    ``run_dir`` and resumes from there."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3

    dev = resolve_device(device)
    run_dir.mkdir(parents=True, exist_ok=True)
    partial, final = run_dir / "checkpoint.pt", run_dir / "result.json"
    if final.exists():
        return Retrained(**json.loads(final.read_text()) | {"resumed": True})
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
    mixup = None
    if recipe.mixup > 0 or recipe.cutmix > 0:
        mixup = Mixup(
            mixup_alpha=recipe.mixup,
            cutmix_alpha=recipe.cutmix,
            label_smoothing=recipe.label_smoothing,
            num_classes=data.num_classes,
        )
        criterion: nn.Module = SoftTargetCrossEntropy()
    elif recipe.label_smoothing > 0:
        criterion = LabelSmoothingCrossEntropy(smoothing=recipe.label_smoothing)
    else:
        criterion = nn.CrossEntropyLoss()
    ema = ModelEmaV3(model, decay=recipe.ema_decay) if recipe.ema_decay > 0 else None
    step, elapsed, resumed = 0, 0.0, False
    if partial.exists():
        needed = ("model", "optimizer", "step", "elapsed_s") + (("ema",) if ema is not None else ())
        saved = load_checkpoint(partial, dev, keys=needed)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        step, elapsed, resumed = saved["step"], saved["elapsed_s"], True
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")
    val = data.subset(val_idx)
    started = last_save = time.perf_counter()
    started_at = time.time()

    def save() -> None:
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
        state |= {"ema": ema.state_dict()} if ema is not None else {}
        save_atomic(state | {"elapsed_s": elapsed + time.perf_counter() - started}, partial)

    epochs_done = step // steps_per_epoch
    try:
        while step < total:
            epoch, index = divmod(step, steps_per_epoch)
            order = indices[
                torch.randperm(
                    len(indices),
                    generator=torch.Generator().manual_seed(recipe.seed * EPOCH_SEED_STRIDE + epoch),
                )
            ]
            for x, y in source.batches(
                order[index * batch_size : steps_per_epoch * batch_size], batch_size, dev, drop_last=True
            ):
                generator = torch.Generator(device=dev).manual_seed(recipe.seed * STEP_SEED_STRIDE + step)
                x = random_translate(x, recipe.translate, generator)
                x = random_flip(x, generator) if recipe.flip else x
                x = x.float().div_(255).contiguous(memory_format=memory)
                if mixup is not None:  # Mixup draws from numpy's and torch's global generators
                    torch.manual_seed(recipe.seed * STEP_SEED_STRIDE + step)
                    np.random.seed((recipe.seed * STEP_SEED_STRIDE + step) % 2**32)
                    x, y = mixup(x, y)
                with autocast:
                    loss = criterion(model(x).float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                step += 1
                scheduler.step_update(num_updates=step)
                if ema is not None:
                    ema.update(model, step=step)
                if progress is not None and (step % PROGRESS_EVERY == 0 or step == total):
                    value = loss.item()
                    if not math.isfinite(value):
                        partial.unlink(missing_ok=True)
                        raise UserError(
                            f"retrain: training diverged (loss {value}) by step {step}; lower retrain.lr"
                        )
                    progress(step, total, value)
                now = time.perf_counter()
                if now - last_save > checkpoint_every_s and step < total:
                    save()
                    last_save = now
            epochs_done = step // steps_per_epoch
            if report is not None and step < total:  # the last epoch reports once its result is written
                scored = ema.module if ema is not None else model
                save()  # a scheduler that stops the run here finds it checkpointed
                last_save = time.perf_counter()
                report(epochs_done, evaluate(scored, None, val.images, val.labels, batch_size=1000))
    except KeyboardInterrupt:
        save()
        raise
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elapsed += time.perf_counter() - started
    scored = ema.module if ema is not None else model
    test = data.test.subset(torch.arange(len(data.test))) if data.test is not None else None
    result = Retrained(
        val_top1=evaluate(scored, None, val.images, val.labels),
        test_top1=evaluate(scored, None, test.images, test.labels) if test is not None else None,
        epochs=epochs_done,
        train_seconds=round(elapsed, 1),
        params=count_params(scored),
        recipe=asdict(recipe),
        init=init,
        device=str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        resumed=resumed,
        started_at=started_at,
        finished_at=time.time(),
    )
    save_atomic(scored.state_dict(), run_dir / "model.pt")
    with atomic_path(final) as tmp:
        Path(tmp).write_text(json.dumps(result.to_dict(), indent=1))
    partial.unlink(missing_ok=True)
    if report is not None:
        report(epochs_done, result.val_top1)
    return result


def run_dir_for(cache_dir: str | Path, data: ImageData, name: str, recipe: RetrainRecipe, init: str) -> Path:
    """Where a run's checkpoint and result live: one folder per (data, model, recipe, init)."""
    return Path(cache_dir) / "retrain" / f"{file_safe(data.name)}-{file_safe(name)}-{init}-{recipe.key()}"


def _normalized_timm(
    name: str, data: ImageData, kwargs: dict, mean: torch.Tensor, std: torch.Tensor
) -> nn.Module:
    return Normalized(timm_model(name, data, **kwargs), mean, std)


def _measure_baselines(cfg, candidates: list[Candidate], data: ImageData, console) -> None:
    """Each baseline's latency, by the configured profiler where it can time a bare module (the
    search's profiler settings give figures comparable with the study's)."""
    from latency_models._base import can_time_modules
    from nas.latency import build_profiler

    profiler = build_profiler(cfg.profiler)
    if not can_time_modules(profiler):
        console.print(
            f"[yellow]profiler {profiler.name} cannot time a timm model: baselines get no latency[/]"
        )
        return
    shape = (data.in_channels, data.image_size, data.image_size)
    for candidate in candidates:
        if candidate.kind == "baseline":
            result = profiler.measure_module(candidate.build().eval(), shape)
            candidate.latency = result.median
            candidate.profiler = {
                "name": profiler.name,
                "unit": profiler.unit,
                "settings": profiler.settings(),
                "latency": result.to_dict(),
            }


# --- nas train ------------------------------------------------------------------------------------


@dataclass
class TrainJobs:
    """What a trainer runs: each candidate with the same data, split and recipe."""

    candidates: list[Candidate]
    data: ImageData
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    recipe: RetrainRecipe
    init: str
    device: str
    checkpoint_every_s: float
    cache_dir: Path
    progress: bool

    def run_dir(self, candidate: Candidate) -> Path:
        return run_dir_for(self.cache_dir, self.data, candidate.name, self.recipe, self.init_of(candidate))

    def init_of(self, candidate: Candidate) -> str:
        return self.init if candidate.kind == "trial" else "scratch"

    def train(self, candidate: Candidate, device: str | None = None, **hooks: Any) -> Retrained:
        return retrain(
            candidate.build(),
            self.data,
            self.train_idx,
            self.val_idx,
            self.recipe,
            self.run_dir(candidate),
            device=device or self.device,
            init=self.init_of(candidate),
            checkpoint_every_s=self.checkpoint_every_s,
            **hooks,
        )


class Trainer(Protocol):
    """Runs a set of training jobs (conf group ``trainer``): returns each candidate's result by
    name. Implementations: LocalTrainer (one after another, here) and nas.tune_train.TuneTrainer
    (Ray Tune trials, several at once, a scheduler stopping weak ones early)."""

    def run(self, jobs: TrainJobs, console: Any) -> dict[str, Retrained]: ...


@dataclass(frozen=True)
class LocalTrainer:
    """The candidates one after another in this process, with a progress bar each."""

    def run(self, jobs: TrainJobs, console: Any) -> dict[str, Retrained]:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TextColumn("loss {task.fields[loss]:.3f}"),
            TimeElapsedColumn(),
        ]
        results = {}
        for done, candidate in enumerate(jobs.candidates):
            status.report("training", done, len(jobs.candidates))
            with Progress(*columns, console=console, disable=not jobs.progress) as bar:
                task = bar.add_task(f"train {candidate.name}", total=None, loss=float("nan"))
                plain = _PlainProgress(candidate.name, console) if not jobs.progress else None

                def update(step: int, total: int, loss: float) -> None:
                    bar.update(task, completed=step, total=total, loss=loss)
                    if plain is not None:
                        plain(step, total, loss)

                results[candidate.name] = jobs.train(candidate, progress=update)
        return results


class _PlainProgress:
    """With progress=false (logs, services): one plain line per tenth of a training, with its
    pace, so that a slow run shows in its log before it ends."""

    def __init__(self, name: str, console: Any) -> None:
        self.name, self.console, self.shown = name, console, 0
        self.start: tuple[float, int] | None = None

    def __call__(self, step: int, total: int, loss: float) -> None:
        now = time.perf_counter()
        if self.start is None:
            self.start = (now, step)
            return
        tenth = 10 * step // max(1, total)
        if tenth > self.shown:
            self.shown = tenth
            pace = (step - self.start[1]) / max(now - self.start[0], 1e-9)
            self.console.print(
                f"train {self.name}: step {step}/{total} ({tenth * 10} %), loss {loss:.3f}, "
                f"{pace:.1f} steps/s",
                highlight=False,
            )


@dataclass
class Candidate:
    """One model to train: its name (the record's key), how to build it, and what it is."""

    name: str
    build: Callable[[], nn.Module]
    kind: str  # "trial", "arch" or "baseline"
    trial: int | None = None
    inherited_top1: float | None = None
    latency: float | None = None
    profiler: dict[str, Any] | None = None  # baselines: what measured ``latency``


def result_attr(candidate: Candidate, init: str, recipe: RetrainRecipe) -> str:
    """The study user attribute that holds a candidate's result: found models by trial number,
    baselines by timm name, each per (init, recipe). Optuna does not let a finished trial's
    attributes change, so results are study attributes, one per run (no write races)."""
    return RunRecord.key_for(candidate.kind, candidate.name, init, recipe.key())


def run_train(cfg, config_dirs, console) -> int:
    """``nas train``: train a study's trial(s), an arch.yaml or a timm model on its own."""
    import optuna
    import yaml
    from rich.table import Table

    from nas.config import instantiate
    from nas.export import choose_trial, inherited_model
    from nas.records import STUDY_ATTR
    from nas.study import latency, load_existing_study, open_storage, reading_storage, top1
    from nas.train import channel_stats
    from search_spaces.arch import arch_from_dict
    from search_spaces.layers import build_model

    given = {
        "trial": cfg.trial is not None,
        "trials": cfg.trials is not None,
        "front": bool(cfg.front),
        "latency_budget_ms": cfg.latency_budget_ms is not None,
        "arch": cfg.arch is not None,
        "timm": cfg.timm is not None,
        "timm_baselines": bool(cfg.timm_baselines),
    }
    if sum(given.values()) != 1:
        named = ", ".join(k for k, v in given.items() if v) or "none"
        raise UserError(
            "train: give exactly one of trial=N, trials=[N,...], front=true, latency_budget_ms=X, arch=FILE, "
            f"timm=NAME, timm_baselines=true (got {named})"
        )
    if cfg.trials is not None and not cfg.trials:
        raise UserError("trials: give at least one trial number, e.g. trials=[3,17]")
    if cfg.init == "inherit" and (given["arch"] or given["timm"] or given["timm_baselines"]):
        raise UserError("init: inherit needs a study's trial (trial=, front=true or latency_budget_ms=)")
    recipe = instantiate("retrain", cfg.retrain)
    trainer = instantiate("trainer", cfg.trainer)  # every setting checked before any work
    baselines = instantiate("baselines", cfg.baselines)
    dataset = instantiate("dataset", cfg.dataset)
    data = dataset.load()
    train_idx, val_idx = data.split(val_fraction=dataset.val_fraction, seed=cfg.seed)
    mean, std = channel_stats(data, train_idx)

    def from_scratch(arch) -> Callable[[], nn.Module]:
        def build() -> nn.Module:
            torch.manual_seed(recipe.seed)
            model = build_model(arch)
            model.mean.copy_(mean.view(-1, 1, 1))
            model.std.copy_(std.view(-1, 1, 1))
            return model

        return build

    study_name, candidates = None, []
    uses_study = given["trial"] or given["trials"] or given["front"] or given["latency_budget_ms"]
    from infra.storage import sqlite_path

    database = sqlite_path(cfg.storage)
    if uses_study or cfg.study_name is not None or (database is not None and database.is_file()):
        with reading_storage(cfg.storage) as storage:
            study = load_existing_study(storage, cfg.study_name)
            info = study.user_attrs.get(STUDY_ATTR, {})
            study_name = study.study_name
            if info.get("data_fingerprint") not in (None, data.fingerprint()):
                raise UserError(
                    f"dataset: study {study_name!r} was searched on {info.get('dataset')!r}, not on "
                    f"{data.name!r}; give the dataset settings of its nas search"
                )
            if given["front"]:
                chosen = sorted(study.best_trials, key=latency)
                if not chosen:
                    raise UserError(f"study {study_name!r} has no completed trials; run nas search first")
            elif given["trials"]:
                chosen = [choose_trial(study, number, None) for number in dict.fromkeys(cfg.trials)]
            elif uses_study:
                chosen = [choose_trial(study, cfg.trial, cfg.latency_budget_ms)]
            else:
                chosen = []
            for trial in chosen:
                from nas.study import trial_arch

                arch = trial_arch(trial)
                if cfg.init == "inherit":
                    build = functools.partial(inherited_model, info, study_name, trial)
                else:
                    build = from_scratch(arch)
                candidates.append(
                    Candidate(str(trial.number), build, "trial", trial.number, top1(trial), latency(trial))
                )
    if given["arch"]:
        source = Path(cfg.arch)
        if not source.is_file():
            raise UserError(f"arch: {str(source)!r} does not exist")
        try:
            arch = arch_from_dict(yaml.safe_load(source.read_text()))
        except Exception as e:
            raise UserError(f"arch: {source} is not an architecture: {str(e).splitlines()[0]}") from None
        if (arch.image_size, arch.in_channels, arch.num_classes) != (
            data.image_size,
            data.in_channels,
            data.num_classes,
        ):
            raise UserError(
                f"arch: {source} takes {arch.in_channels}x{arch.image_size}x{arch.image_size} images and "
                f"{arch.num_classes} classes; dataset {data.name!r} has {data.in_channels}x{data.image_size}x"
                f"{data.image_size} and {data.num_classes}"
            )
        candidates.append(Candidate(f"arch-{arch.key()}", from_scratch(arch), "arch"))
    if given["timm"] or given["timm_baselines"]:
        chosen_models = {cfg.timm: baselines.models.get(cfg.timm, {})} if given["timm"] else baselines.models
        for name, listed in chosen_models.items():
            kwargs = dict(cfg.timm_kwargs if cfg.timm_kwargs is not None else listed)
            timm_model(name, data, **kwargs)  # checked now: one line if it cannot be built
            build = functools.partial(_normalized_timm, name, data, kwargs, mean, std)
            candidates.append(Candidate(name, build, "baseline"))
        _measure_baselines(cfg, candidates, data, console)

    jobs = TrainJobs(
        candidates,
        data,
        train_idx,
        val_idx,
        recipe,
        cfg.init,
        cfg.device,
        cfg.checkpoint_every_s,
        Path(cfg.cache_dir).resolve(),  # absolute: Tune trials run in folders of their own
        bool(cfg.progress),
    )
    status.report("training", 0, len(jobs.candidates))
    results = trainer.run(jobs, console)
    status.report("training", len(jobs.candidates), len(jobs.candidates))
    if study_name is not None:  # one writer: the figures land with the study
        storage = open_storage(cfg.storage, cfg.heartbeat_s)
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
            for candidate in candidates:
                record = results[candidate.name].to_dict() | {"kind": candidate.kind, "name": candidate.name}
                if candidate.profiler is not None:
                    record["measured"] = candidate.profiler
                study.set_user_attr(result_attr(candidate, cfg.init, recipe), record)
        finally:
            storage.engine.dispose()

    table = Table(
        title=f"nas train ({'study ' + repr(study_name) if study_name else 'no study'}; "
        f"{recipe.epochs} epochs, {recipe.opt} lr {recipe.lr:g}, init {cfg.init})"
    )
    for column in (
        "model",
        "params",
        "inherited val top-1",
        "val top-1",
        "test top-1",
        "latency",
        "train s",
        "",
    ):
        table.add_column(column, justify="right" if column != "model" else "left")
    for candidate in candidates:
        r = results[candidate.name]
        table.add_row(
            f"trial {candidate.name}" if candidate.kind == "trial" else candidate.name,
            f"{r.params:,}",
            f"{candidate.inherited_top1:.2f}" if candidate.inherited_top1 is not None else "-",
            f"{r.val_top1:.2f}",
            f"{r.test_top1:.2f}" if r.test_top1 is not None else "-",
            f"{candidate.latency:.4g}" if candidate.latency is not None else "-",
            f"{r.train_seconds:.1f}",
            f"stopped at epoch {r.epochs}" if r.stopped_early else "cached" if r.resumed else "done",
        )
    console.print(table)
    return 0

"""Supernet training with the sandwich rule (BigNAS / AutoFormer), in-place distillation optional.

Each step trains the largest member, the smallest and ``num_random`` seeded random members on
the labels (with ``distill=True`` the smaller members learn from the largest member's soft
predictions instead; in the short default recipe that hurt, see BENCHMARKS.md). Checkpoints
are written atomically every ``checkpoint_every_s`` seconds, so a killed run resumes where it
stopped (``nas.resumable``, the loop stand-alone training shares); the finished supernet is cached
under a key of (space, data, split, recipe) and reused by later searches.

Also the helpers both trainings and the search use: ``resolve_device``, ``check_ranges`` (recipe
ranges), ``channel_stats`` (normalisation), ``evaluate`` (top-1) and ``activation_sparsity``.

Over 400 lines: ``train_supernet`` is one loop whose step closes over the supernet, optimizer,
member pool, CUDA graphs and profiling window; the checkpointing and seeding are in
``nas.resumable`` and the CUDA graphs in ``nas.member_graphs`` already, and the helpers above
stay here so that their import path (``nas.search``, ``nas.training``, benchmarks) is the
module's as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nas import status
from nas.augment import check_augmentation, random_flip, random_translate, require_resolved
from nas.checkpoint import load_checkpoint, save_atomic
from nas.data import ImageData
from nas.distributed import Rank, average_gradients, launch
from nas.member_graphs import MemberGraphs
from nas.records import file_safe
from nas.resumable import EPOCH_SEED_STRIDE, STEP_SEED_STRIDE, ResumableLoop, epoch_seed
from search_spaces.arch import Arch
from search_spaces.base import SearchSpace
from search_spaces.ops import SparsePair
from search_spaces.supernet import Supernet

__all__ = [  # the seed strides live in nas.resumable; importable from here as before
    "EPOCH_SEED_STRIDE",
    "STEP_SEED_STRIDE",
    "MemberGraphs",
    "Recipe",
    "TrainedSupernet",
    "activation_sparsity",
    "channel_stats",
    "check_ranges",
    "evaluate",
    "member_pool",
    "resolve_device",
    "supernet_key",
    "train_supernet",
]

PROFILE_SKIP, PROFILE_STEPS = 20, 20  # CUDA: steps skipped (warm-up), then profiled for the busy share
STATS_SAMPLE = 10_000  # streamed data: images that give the normalisation statistics


def check_ranges(group: str, recipe: Any, *extra: tuple[str, bool, str]) -> None:
    """The ranges every training recipe shares (epochs, batch, lr, weight decay, warm-up) and
    ``extra`` (key, holds, limit): the first that fails is a ValueError naming ``group.key``."""
    shared = (
        ("epochs", recipe.epochs >= 1, ">= 1"),
        ("batch_size", recipe.batch_size >= 1, ">= 1"),
        ("lr", 0 < recipe.lr < math.inf, "> 0"),
        ("weight_decay", recipe.weight_decay >= 0, ">= 0"),
        ("warmup_epochs", 0 <= recipe.warmup_epochs <= recipe.epochs, "between 0 and epochs"),
    )
    for key, ok, limit in (*shared, *extra):
        if not ok:
            raise ValueError(f"{group}.{key}: expected a value {limit}, got {getattr(recipe, key)!r}")


@dataclass(frozen=True)
class Recipe:
    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    num_random: int = 2  # random members per step besides the largest and smallest
    label_smoothing: float = 0.1
    distill: bool = False  # True: smaller members learn from the largest's soft predictions
    # Augmentation: shift each image by up to this many pixels (0: none); mirror half of the
    # images left-right. "auto": chosen from the dataset (nas.augment.auto_augmentation).
    translate: int | Literal["auto"] = 0
    flip: bool | Literal["auto"] = False
    # Random members drawn from a pool of this many architectures, drawn again every
    # ``pool_epochs`` epochs (0: fresh members every step). A pool lets CUDA graphs be reused.
    member_pool: int = 0
    pool_epochs: int = 1
    cuda_graphs: bool = False  # CUDA: each member's forward + backward replayed as a CUDA graph
    # Processes (one per GPU, or gloo processes on CPU) sharing each step's ``batch_size`` images;
    # not part of the cache key: N processes train the supernet one process would.
    devices: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        """Ranges (types are checked by the config schema before this is built)."""
        check_ranges(
            "supernet",
            self,
            ("num_random", self.num_random >= 0, ">= 0"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            (
                "member_pool",
                self.member_pool == 0 or self.member_pool >= self.num_random,
                ">= num_random, or 0",
            ),
            ("pool_epochs", self.pool_epochs >= 1, ">= 1"),
            ("devices", self.devices >= 1, ">= 1"),
            ("seed", self.seed >= 0, ">= 0"),
        )
        check_augmentation("supernet", self)
        if self.batch_size % self.devices:
            raise ValueError(
                f"supernet.batch_size: {self.batch_size} images per step do not split evenly over "
                f"supernet.devices={self.devices}; make it a multiple"
            )

    def lr_at(self, step: int, total: int, steps_per_epoch: int) -> float:
        warmup = max(1, int(self.warmup_epochs * steps_per_epoch))
        if step < warmup:
            return self.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return self.lr * 0.5 * (1 + math.cos(math.pi * progress))


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# Recipe fields added later: left out of the cache key at these values, so supernets trained
# before they existed are still found.
_LATER_FIELDS = {"member_pool": 0, "pool_epochs": 1, "cuda_graphs": False}
_NOT_IN_KEY = {"devices"}  # how the training is spread, not what it trains


def supernet_key(space_config: dict[str, Any], data: ImageData, split: dict, recipe: Recipe) -> str:
    fields = {
        k: v
        for k, v in asdict(recipe).items()
        if _LATER_FIELDS.get(k, object()) != v and k not in _NOT_IN_KEY
    }
    blob = json.dumps(
        {"space": space_config, "data": data.fingerprint(), "split": split, "recipe": fields},
        sort_keys=True,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


@dataclass
class TrainedSupernet:
    net: Supernet
    path: Path  # the finished checkpoint
    meta: dict[str, Any]  # recipe, device, training time, top-1 of the extremes
    reused: bool  # True when loaded from the cache instead of trained now


@torch.no_grad()
def activation_sparsity(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> float:
    """Share of exactly-zero hidden activations (MLPs and conv blocks) of a static model."""
    zeros, total = 0, 0

    def count(module, inputs, output) -> None:
        nonlocal zeros, total
        zeros += int((output == 0).sum())
        total += output.numel()

    hooks = [m.act.register_forward_hook(count) for m in model.modules() if isinstance(m, SparsePair)]
    device = next(model.parameters()).device
    try:
        model(images[:batch_size].to(device).float().div(255))
    finally:
        for hook in hooks:
            hook.remove()
    return zeros / total if total else 0.0


@torch.no_grad()
def evaluate(
    net: Supernet | torch.nn.Module,
    arch: Arch | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 1000,
    each_batch: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> float:
    """Top-1 (%) of ``arch`` inside ``net`` (or of a standalone module when arch is None) on uint8
    ``images``; each batch runs inside ``each_batch()`` (e.g. the shared measurement lock). The
    count stays on the device until the end: one synchronisation per call, not per batch."""
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    for start in range(0, len(images), batch_size):
        with each_batch(), autocast:
            x = images[start : start + batch_size].to(device, non_blocking=True).float().div_(255)
            logits = net(x) if arch is None else net(x, arch)
            correct += (logits.argmax(1) == labels[start : start + batch_size].to(device)).sum()
    net.train(was_training)
    return 100.0 * correct.item() / max(1, len(images))


def channel_stats(data: ImageData, train_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the training images in [0, 1] (of a seeded sample of
    ``STATS_SAMPLE`` images when the data is streamed)."""
    if data.streamed:
        sample = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(0))]
        stats = data.subset(sample[:STATS_SAMPLE].sort().values).images.float().div_(255)
    else:
        stats = data.images[train_idx].float().div_(255)
    return stats.mean(dim=(0, 2, 3)), stats.std(dim=(0, 2, 3))


def _busy_share(profile: torch.profiler.profile, seconds: float) -> float:
    """Share of ``seconds`` of wall time during which the GPU ran kernels (from a profiler trace)."""
    busy_us = sum(event.self_device_time_total for event in profile.key_averages())
    return round(min(1.0, busy_us / 1e6 / seconds), 3) if seconds > 0 else 0.0


def member_pool(space: SearchSpace, recipe: Recipe, epoch: int, exclude: list[Arch]) -> list[Arch]:
    """The pool random members are drawn from in ``epoch``: ``recipe.member_pool`` distinct
    architectures (not the extremes), seeded by (seed, epoch // pool_epochs), so reruns repeat it."""
    rng = random.Random(epoch_seed(recipe.seed, epoch // recipe.pool_epochs) + 7)
    pool, keys = [], {arch.key() for arch in exclude}
    for _ in range(50 * recipe.member_pool):
        if len(pool) == recipe.member_pool:
            break
        arch = space.sample(rng)
        if arch.key() not in keys:
            keys.add(arch.key())
            pool.append(arch)
    return pool


def train_supernet(
    space: SearchSpace,
    space_config: dict[str, Any],
    data: ImageData,
    train_idx: torch.Tensor,
    val_idx: torch.Tensor,
    split: dict,
    recipe: Recipe,
    cache_dir: Path,
    device: str = "auto",
    checkpoint_every_s: float = 30.0,
    progress: bool = True,
    rank: Rank | None = None,
) -> TrainedSupernet:
    """Train the supernet, resume its interrupted training, or reuse the cached result.

    With ``recipe.devices`` > 1 the training runs in that many processes started by torchrun
    (nas.distributed; ``rank`` is set there): each takes its share of every step's batch and the
    gradients are averaged across them, so the result is the one-process result.

    Resident data is moved to the training device once and batches are slices of it; streamed
    data comes from DataLoader workers. Augmentation runs batched on the device, seeded per step.
    Nothing waits for the GPU within a step (the loss is read every ``PROGRESS_EVERY`` steps).
    The result records images/s and, on CUDA, the share of a profiled window of steps during
    which the GPU was busy."""
    require_resolved("supernet", recipe)
    key = supernet_key(space_config, data, split, recipe)
    run_dir = Path(cache_dir) / "supernets" / f"{space.name}-{file_safe(data.name)}-{key}"
    run_dir.mkdir(parents=True, exist_ok=True)
    final, partial = run_dir / "supernet.pt", run_dir / "checkpoint.pt"
    dev = resolve_device(device)
    # NAS_TORCHRUN=1: through torchrun even with one process (to measure the launcher on one GPU)
    through_torchrun = recipe.devices > 1 or os.environ.get("NAS_TORCHRUN") == "1"
    launched = through_torchrun and rank is None and not final.exists()
    if launched:
        args = (space, space_config, data, train_idx, val_idx, split, recipe, cache_dir)
        kwargs = {"device": str(dev), "checkpoint_every_s": checkpoint_every_s, "progress": progress}
        launch("nas.supernet_training:train_supernet", args, kwargs, recipe.devices, dev)
        if not final.exists():
            raise RuntimeError(f"distributed supernet training ended without writing {final}")
    if rank is not None:
        dev = rank.device
    world, me = (rank.world, rank.rank) if rank is not None else (1, 0)
    torch.manual_seed(recipe.seed)  # initial weights only; sampling uses per-step RNGs
    net = space.make_supernet()
    if final.exists():
        saved = load_checkpoint(final, "cpu", keys=("model", "meta"))
        net.load_state_dict(saved["model"])
        return TrainedSupernet(net.to(dev), final, saved["meta"], reused=not launched)

    if data.streamed:  # indices into the whole dataset
        source, indices = data, train_idx
    else:  # the training split on the device once; batches are slices of it
        source = data.subset(train_idx).to(dev)
        indices = torch.arange(len(train_idx))
    net.set_normalization(*channel_stats(data, train_idx))
    if net.calibration_size:  # BatchNorm members: their statistics come from these images
        order = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(recipe.seed))
        net.set_calibration(data.subset(train_idx[order[: net.calibration_size]].sort().values).images)
    net.to(dev)
    decay = [p for n, p in net.named_parameters() if p.dim() > 1 and "pos_embed" not in n]
    no_decay = [p for n, p in net.named_parameters() if not (p.dim() > 1 and "pos_embed" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr,
        fused=dev.type == "cuda",  # one kernel for the whole update instead of several per tensor
    )
    batch_size = min(recipe.batch_size, len(indices))  # images per step, over all processes
    batch_size -= batch_size % world  # (a dataset smaller than the batch: what splits evenly)
    share = batch_size // world  # this process's images of each step: rows me*share:(me+1)*share
    steps_per_epoch = len(indices) // batch_size
    total = steps_per_epoch * recipe.epochs
    # Every process holds the same weights and optimizer state: the first one writes them.
    state = {"model": net, "optimizer": optimizer}
    loop = ResumableLoop(partial, state, recipe.seed, steps_per_epoch, total, checkpoint_every_s, me == 0)
    loop.resume("cpu")

    largest, smallest = space.largest(), space.smallest()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")
    graphs = MemberGraphs() if recipe.cuda_graphs and dev.type == "cuda" else None
    part = (me * share, batch_size) if world > 1 else None
    current_pool: dict[int, list[Arch]] = {}

    def pools(epoch: int, x: torch.Tensor) -> list[Arch]:
        """This epoch's pool of random members (drawn, and graphed, when it changes)."""
        if epoch not in current_pool:
            pool = member_pool(space, recipe, epoch, [largest, smallest]) if recipe.member_pool else []
            if graphs is not None:  # members already graphed are kept as they are
                graphs.capture(net, [largest, smallest, *pool], x)
            current_pool.clear()
            current_pool[epoch] = pool
        return current_pool[epoch]

    net.train()
    columns = [
        TextColumn("supernet"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[rate]:,.0f} img/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    first_step = loop.step
    # On CUDA, a window of steps is profiled to measure how busy the GPU was.
    window = range(
        min(total - 1, first_step + PROFILE_SKIP), min(total, first_step + PROFILE_SKIP + PROFILE_STEPS)
    )
    profile, profile_start, busy = None, 0.0, None

    def train_step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        step = loop.step
        generator = torch.Generator(device=dev).manual_seed(loop.step_seed())
        x = random_translate(x, recipe.translate, generator, part)
        x = random_flip(x, generator, part) if recipe.flip else x
        x = x.float().div_(255)
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr_at(step, total, steps_per_epoch)
        rng = random.Random(loop.step_seed())  # same members on every rerun
        pool = pools(step // steps_per_epoch, x)
        if recipe.member_pool:  # distinct members: a graph's outputs are overwritten by its replay
            randoms = rng.sample(pool, min(recipe.num_random, len(pool)))
        else:
            randoms = [space.sample(rng) for _ in range(recipe.num_random)]
        members = [largest, smallest] + randoms
        optimizer.zero_grad(set_to_none=True)
        soft_targets = first_loss = None
        for i, arch in enumerate(members):
            graphed = graphs.get(arch) if graphs is not None else None
            if graphed is not None:
                logits = graphed(x)
            else:
                with autocast:
                    logits = net(x, arch)
            if i == 0 or not recipe.distill:
                loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
                if i == 0:
                    soft_targets = logits.detach().float().softmax(-1)
                    first_loss = loss.detach()
            else:
                loss = F.cross_entropy(logits.float(), soft_targets)
            loss.backward()
        if world > 1:
            average_gradients(net)
        loop.clipped_step(net, optimizer, "supernet", advice)  # skips non-finite gradients
        return first_loss

    advice = f"lower supernet.lr (now {recipe.lr}) or raise supernet.warmup_epochs"
    with Progress(*columns, disable=not progress or me != 0, transient=False) as bar, loop.running():
        task = bar.add_task("train", total=total, completed=loop.step, loss=float("nan"), rate=0.0)
        for _, epoch_batches in loop.epochs(indices, batch_size):
            if world > 1:  # this process's rows of each step's batch
                epoch_batches = epoch_batches.view(-1, batch_size)[:, me * share : (me + 1) * share]
                epoch_batches = epoch_batches.reshape(-1)
            for x, y in source.batches(epoch_batches, share, dev, drop_last=True):
                if dev.type == "cuda" and loop.step == window.start and me == 0:
                    torch.cuda.synchronize(dev)
                    profile = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
                    profile.__enter__()
                    profile_start = time.perf_counter()
                first_loss = train_step(x, y)
                loop.step += 1
                if profile is not None and loop.step == window.stop:
                    torch.cuda.synchronize(dev)
                    seconds = time.perf_counter() - profile_start
                    profile.__exit__(None, None, None)
                    busy, profile = _busy_share(profile, seconds), None
                if loop.reads_loss():  # reading the loss waits for the GPU
                    loss_value = loop.checked(first_loss, "supernet", advice)
                    rate = (loop.step - first_step) * batch_size / loop.seconds()
                    bar.update(task, completed=loop.step, loss=loss_value, rate=rate)
                    if me == 0:
                        status.report("supernet", loop.step, total)
                loop.save_when_due()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = loop.seconds()
    elapsed = loop.elapsed_s + seconds
    if me != 0:  # the first process evaluates and writes the result
        return TrainedSupernet(net, final, {}, reused=False)
    val = data.subset(val_idx)
    meta = {
        "key": key,
        "space": space.name,
        "data": data.name,
        "recipe": asdict(recipe),
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "train_seconds": round(elapsed, 1),
        "steps": total,
        "resumed_at_step": first_step,  # 0: trained in one go
        "batch_size": batch_size,
        "devices": world,
        "torchrun": rank is not None,
        "images_per_s": round((total - first_step) * batch_size / seconds) if total > first_step else None,
        "gpu_busy_share": busy,
        "graphed_members": len(graphs.graphed) if graphs is not None else 0,
        "skipped_steps": loop.skipped_steps,  # non-finite gradients (since the last resume)
        "largest_top1": evaluate(net, largest, val.images, val.labels),
        "smallest_top1": evaluate(net, smallest, val.images, val.labels),
    }
    save_atomic({"model": net.state_dict(), "meta": meta}, final)
    loop.finished()
    return TrainedSupernet(net, final, meta, reused=False)

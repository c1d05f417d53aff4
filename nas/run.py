"""``nas run``: the whole path in one command, resumable as every command is.

1. **search** -- ``nas search`` (resumes or tops the study up);
2. **training** -- the distinct architectures of the study's Pareto front and every model of the
   ``baselines`` group, trained with one recipe, several at once on the device
   (``nas.training.trainers.ProcessTrainer``; on a GPU with NVIDIA MPS started when allowed and
   available); finished trainings are read back, interrupted ones resume;
3. **measurement** -- once nothing trains any more, every trained model (found and baseline) is
   measured again by the study's profiler, one at a time and alone on the machine, each until its
   measurement is quiet (or flagged): the figures the comparison uses are measured alike;
4. **report** -- ``nas report``: per baseline, the best found model at or under its latency and
   the fastest found model of at least its top-1.

Each phase's wall time is printed and stored with the study (``RUN_PHASES_ATTR``). The same
command again continues where it stopped: a finished phase costs seconds.
"""

from __future__ import annotations

import datetime
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import open_dict
from rich.table import Table

from latency_models._base import hardware_for, profiler_key
from nas import status
from nas.augment import Augmentation, describe_augmentation, resolve_augmentation
from nas.config import instantiate
from nas.latency import build_profiler
from nas.records import FINAL_LATENCY_ATTR, RUN_PHASES_ATTR, FinalLatencies
from nas.report import run_report
from nas.search import prepare, run_search
from nas.study import open_storage
from nas.supernet_training import channel_stats, resolve_device
from nas.training.candidates import Candidate
from nas.training.command import (
    TrainingSplit,
    quantized_results,
    store_results,
    study_candidates,
    timm_candidates,
)
from nas.training.trainers import ProcessTrainer, TrainJobs
from nas.training.tune import mps_running

MPS_CONTROL = "nvidia-cuda-mps-control"


@dataclass(frozen=True)
class RunPlan:
    """How ``nas run`` goes (conf group ``run``)."""

    baselines: bool = True  # train and measure the models of the baselines group
    concurrent: int | str = "auto"  # trainings at once (ProcessTrainer)
    mps: bool = True  # on CUDA, start NVIDIA MPS for the trainings where it is there and not running
    final_attempts: int = 3  # measurements of one model in the final pass until one is quiet and steady
    max_spread: float = 0.03  # steady: a final measurement's round medians agree (std / mean) within this

    def __post_init__(self) -> None:
        if isinstance(self.final_attempts, bool) or self.final_attempts < 1:
            raise ValueError(f"run.final_attempts: expected an integer >= 1, got {self.final_attempts!r}")
        if not 0 < self.max_spread:
            raise ValueError(f"run.max_spread: expected a number > 0, got {self.max_spread!r}")
        ProcessTrainer(self.concurrent)  # its own check


def run_all(cfg, config_dirs, console) -> int:
    plan = instantiate("run", cfg.run)
    recipe = instantiate("retrain", cfg.retrain)
    baselines = instantiate("baselines", cfg.baselines) if plan.baselines else None
    setup = prepare(cfg, config_dirs)  # every setting checked before anything is written
    given, auto = recipe, Augmentation.from_dict(setup.augmentation["auto"])
    recipe = resolve_augmentation(given, auto)  # the trainings augment as the search decided
    console.print(describe_augmentation("retrain", given, recipe, auto))
    phases: dict[str, float] = {}
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    def phase(name: str, started: float) -> None:
        phases[name] = round(time.perf_counter() - started, 1)
        console.print(f"[bold]nas run[/]: {name} done in {phases[name]:.1f} s")

    started = time.perf_counter()
    code = run_search(setup, console)
    phase("search", started)
    if code != 0:
        return code
    with open_dict(cfg):
        cfg.study_name = setup.study_name  # the later phases work on this study

    started = time.perf_counter()
    split = TrainingSplit(
        setup.data, setup.train_idx, setup.val_idx, *channel_stats(setup.data, setup.train_idx)
    )
    device = str(resolve_device(cfg.device))
    _, found = study_candidates(cfg, "front", split, recipe)
    with open_dict(cfg):
        cfg.timm = None
    candidates: list[Candidate] = [*found, *(timm_candidates(cfg, baselines, split) if baselines else [])]
    repeats = sum(len(t.same) for t in found)
    console.print(
        f"Training {len(found)} distinct front architectures ({len(found) + repeats} front trials)"
        f"{f' and {len(candidates) - len(found)} baselines' if baselines else ''}, one recipe "
        f"({recipe.epochs} epochs)."
    )
    jobs = TrainJobs(
        candidates,
        split.data,
        split.train_idx,
        split.val_idx,
        recipe,
        "scratch",
        device,
        cfg.checkpoint_every_s,
        Path(cfg.cache_dir).resolve(),
        bool(cfg.progress),
    )
    trainer = ProcessTrainer(plan.concurrent)
    with gpu_sharing(plan.mps and device.startswith("cuda") and trainer.processes(jobs) > 1, console):
        results = trainer.run(jobs, console)
    with open_dict(cfg):
        cfg.init = "scratch"
    int8 = quantized_results(setup.profiler, jobs, results, console)  # where the profiler quantizes
    store_results(cfg, setup.study_name, candidates, results, recipe, int8)
    phase("training", started)

    started = time.perf_counter()
    measure_alike(cfg, candidates, split.data, plan.final_attempts, plan.max_spread, console)
    phase("measurement", started)

    started = time.perf_counter()
    with open_dict(cfg):
        cfg.out_dir = cfg.out_dir or "report"
    record_phases(cfg, setup.study_name, started_at, phases)  # before the report, which shows them
    code = run_report(cfg, config_dirs, console)
    phase("report", started)
    record_phases(cfg, setup.study_name, started_at, phases)
    table = Table(title=f"nas run of {setup.study_name!r}")
    table.add_column("phase")
    table.add_column("seconds", justify="right")
    for name, seconds in phases.items():
        table.add_row(name, f"{seconds:.1f}")
    table.add_row("total", f"{sum(phases.values()):.1f}")
    console.print(table)
    return code


@contextmanager
def gpu_sharing(wanted: bool, console) -> Iterator[None]:
    """NVIDIA MPS for trainings that share a GPU (their kernels overlap instead of taking turns):
    started here when ``wanted``, installed and not running, and stopped again afterwards."""
    control = shutil.which(MPS_CONTROL)
    if not wanted or control is None or mps_running():
        if wanted and control is None:
            console.print(f"[yellow]{MPS_CONTROL} not found: the trainings share the GPU without MPS[/]")
        yield
        return
    started = subprocess.run([control, "-d"], capture_output=True, text=True).returncode == 0
    console.print(
        "NVIDIA MPS started for the trainings" if started else "[yellow]NVIDIA MPS did not start[/]"
    )
    try:
        yield
    finally:
        if started:
            subprocess.run([control], input="quit\n", capture_output=True, text=True)


def _final_profiler(cfg) -> Any:
    """The study's profiler, measuring one model at a time alone on the machine (no slots)."""
    node = dict(cfg.profiler)
    if "slots" in node:
        node["slots"] = 0
    return build_profiler(node)


def measure_alike(cfg, candidates: list[Candidate], data, attempts: int, max_spread: float, console) -> None:
    """Every trained model measured again, one at a time, until quiet and steady (its round
    medians within ``max_spread`` of each other, std / mean), ``attempts`` at most: a model never
    measured so keeps its best figure, flagged. Into the study attribute FINAL_LATENCY_ATTR;
    figures already there for the same profiler and machine are kept."""
    profiler = _final_profiler(cfg)
    hardware, _ = hardware_for(profiler)
    storage = open_storage(cfg.storage, cfg.heartbeat_s)
    try:
        study = optuna.load_study(study_name=cfg.study_name, storage=storage)
        final = FinalLatencies.of(study.user_attrs)
        described = {"name": profiler.name, "unit": profiler.unit, "key": profiler_key(profiler)}
        if final.profiler.get("key") != described["key"] or final.hardware != hardware:
            final = FinalLatencies(described, hardware, {})
        shape = (data.in_channels, data.image_size, data.image_size)
        flagged = 0
        for i, candidate in enumerate(candidates):
            status.report("measurement", i, len(candidates), study=cfg.study_name)
            key = candidate.final_key()
            measure = candidate.timer(profiler, shape) if key not in final.figures else None
            if measure is None:
                continue
            result = _until_quiet(measure, attempts, max_spread)
            steady = result.steadiness <= max_spread
            flagged += not (result.quiet and steady)
            final.figures[key] = result.to_dict() | {"steady": steady}
            study.set_user_attr(FINAL_LATENCY_ATTR, final.to_dict())  # per model: a rerun resumes here
        worst = max((FinalLatencies.steadiness(f) or 0.0 for f in final.figures.values()), default=0.0)
        status.report("measurement", len(candidates), len(candidates), study=cfg.study_name)
        never = f"; {flagged} never quiet and steady, flagged" if flagged else ""
        console.print(
            f"Final pass: {len(final.figures)} models measured alike by {profiler.name} "
            f"(worst spread of round medians {worst:.1%}{never})."
        )
    finally:
        storage.engine.dispose()


def _until_quiet(measure, attempts: int, max_spread: float):
    best = None
    for attempt in range(attempts):
        result = measure()
        if result.quiet and result.steadiness <= max_spread:
            return result
        if best is None or (not best.quiet, best.steadiness) > (not result.quiet, result.steadiness):
            best = result
        time.sleep(1.0 * (attempt + 1))  # let the machine settle (a training's workers ending)
    return best


def record_phases(cfg, study_name: str, started_at: str, phases: dict[str, float]) -> None:
    storage = open_storage(cfg.storage, cfg.heartbeat_s)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
        runs = [r for r in study.user_attrs.get(RUN_PHASES_ATTR, []) if r.get("started") != started_at]
        entry = {"started": started_at, "phases": dict(phases), "total_s": round(sum(phases.values()), 1)}
        study.set_user_attr(RUN_PHASES_ATTR, [*runs, entry][-20:])
    finally:
        storage.engine.dispose()

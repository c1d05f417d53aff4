"""``nas train``: choose the candidates (a study's trials, an architecture file, timm models),
measure the baselines' latency, hand the jobs to the ``trainer`` group, store every result with
the study and print the table."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from optuna.trial import FrozenTrial
from rich.table import Table

from infra.errors import UserError
from infra.storage import sqlite_path
from latency_models._base import LatencyProfiler, can_time_modules
from latency_models.quantize import quantization_of
from nas import status
from nas.augment import Augmentation, auto_augmentation, describe_augmentation, resolve_augmentation
from nas.config import instantiate
from nas.data import ImageData
from nas.export import choose_trial, inherited_model
from nas.latency import build_profiler
from nas.quantized import calibrate, quantized_top1
from nas.records import STUDY_ATTR, QuantizedAccuracy
from nas.study import latency, load_existing_study, open_storage, reading_storage, top1, trial_arch
from nas.supernet_training import channel_stats
from nas.training.baselines import Baselines, normalized_timm_model, timm_model
from nas.training.candidates import ArchFile, Candidate, StudyTrial, TimmBaseline, scratch_model
from nas.training.loop import WEIGHTS, Retrained
from nas.training.recipe import RetrainRecipe
from nas.training.trainers import TrainJobs
from search_spaces.arch import arch_from_dict

STUDY_SOURCES = ("trial", "trials", "front", "latency_budget_ms")  # candidates from a study
TIMM_SOURCES = ("timm", "timm_baselines")


@dataclass(frozen=True)
class TrainingSplit:
    """The dataset, its training and validation split, and the training images' per-channel
    mean and std (every candidate normalises with them)."""

    data: ImageData
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def run_train(cfg, config_dirs, console) -> int:
    """``nas train``: train a study's trial(s), an arch.yaml or a timm model on its own."""
    source = _chosen_source(cfg)
    recipe = instantiate("retrain", cfg.retrain)
    trainer = instantiate("trainer", cfg.trainer)  # every setting checked before any work
    baselines = instantiate("baselines", cfg.baselines)
    split = training_split(cfg)
    study_name, trials = study_candidates(cfg, source, split, recipe)
    recipe = resolved_recipe(cfg, recipe, split.data, study_name, console)
    repeats = sum(len(t.same) for t in trials)
    if repeats:
        console.print(
            f"{len(trials) + repeats} trials, {len(trials)} distinct architectures: each trained once"
        )
    candidates: list[Candidate] = list(trials)
    if source == "arch":
        candidates.append(_arch_file_candidate(Path(cfg.arch), split, recipe))
    if source in TIMM_SOURCES:
        candidates += timm_candidates(cfg, baselines, split)
    profiler = _profiler(cfg, candidates, split)
    _measure_latencies(profiler, candidates, split.data, console)
    jobs = TrainJobs(
        candidates,
        split.data,
        split.train_idx,
        split.val_idx,
        recipe,
        cfg.init,
        cfg.device,
        cfg.checkpoint_every_s,
        Path(cfg.cache_dir).resolve(),  # absolute: Tune trials run in folders of their own
        bool(cfg.progress),
    )
    status.report("training", 0, len(candidates))
    results = trainer.run(jobs, console)
    status.report("training", len(candidates), len(candidates))
    int8 = quantized_results(profiler, jobs, results, console)
    if study_name is not None:  # one writer: the figures land with the study
        store_results(cfg, study_name, candidates, results, recipe, int8)
    console.print(_table(study_name, recipe, cfg.init, candidates, results, int8))
    return 0


def _profiler(cfg, candidates: list[Candidate], split: TrainingSplit) -> LatencyProfiler | None:
    """The configured profiler where ``nas train`` needs it: to measure the baselines' latency,
    or to quantize the trained models (``profiler.quantize``); calibrated on the training split."""
    if not any(c.measures_latency for c in candidates) and cfg.profiler.get("quantize", "none") == "none":
        return None
    profiler = build_profiler(cfg.profiler)
    calibrate(profiler, split.data, split.train_idx, cfg.seed)
    return profiler


def quantized_results(
    profiler: LatencyProfiler | None, jobs: TrainJobs, results: dict[str, Retrained], console
) -> dict[str, QuantizedAccuracy]:
    """Where ``profiler`` measures an int8 deployment: each trained model (its weights as the
    run saved them) quantized as the profiler quantizes, its top-1 on the validation and the
    dataset's test split beside the float figures. A run that saved no weights (stopped early)
    gets none."""
    if profiler is None or quantization_of(profiler) is None:
        return {}
    data = jobs.data
    shape = (data.in_channels, data.image_size, data.image_size)
    val = data.subset(jobs.val_idx)
    test = data.test.subset(torch.arange(len(data.test))) if data.test is not None else None
    out = {}
    for candidate in jobs.candidates:
        weights, result = jobs.run_dir(candidate) / WEIGHTS, results[candidate.name]
        if result.stopped_early or not weights.is_file():
            continue
        model = candidate.build()
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        tested = (test.images, test.labels, result.test_top1) if test is not None else None
        try:
            out[candidate.name] = quantized_top1(
                profiler, model.eval(), shape, val.images, val.labels, result.val_top1, test=tested
            )
        except Exception as e:  # noqa: BLE001 - one model the tooling cannot quantize: the others go on
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            console.print(f"[yellow]{candidate.label}: not quantized ({type(e).__name__}: {first[:200]})[/]")
    console.print(f"{len(out)} trained models quantized to {quantization_of(profiler)} and scored")
    return out


def resolved_recipe(
    cfg, given: RetrainRecipe, data: ImageData, study_name: str | None, console
) -> RetrainRecipe:
    """``given`` with flip/translate ``auto`` replaced by what the study recorded ``auto`` to be
    for its data (so found models and baselines train as the search decided), or, without a
    study, by what the data says now; the line is printed with the run's header."""
    recorded = None
    if study_name is not None:
        with reading_storage(cfg.storage) as storage:
            info = optuna.load_study(study_name=study_name, storage=storage).user_attrs.get(STUDY_ATTR, {})
        recorded = (info.get("augmentation") or {}).get("auto")
    auto = Augmentation.from_dict(recorded) if recorded else auto_augmentation(data)
    recipe = resolve_augmentation(given, auto)
    line = describe_augmentation("retrain", given, recipe, auto)
    console.print(line + (f", as recorded with study {study_name!r}" if recorded else ""))
    return recipe


def _chosen_source(cfg) -> str:
    """Which one of the ways to name candidates the command gives (one-line errors otherwise)."""
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
    (source,) = (k for k, v in given.items() if v)
    if cfg.init == "inherit" and source not in STUDY_SOURCES:
        raise UserError("init: inherit needs a study's trial (trial=, front=true or latency_budget_ms=)")
    return source


def training_split(cfg) -> TrainingSplit:
    dataset = instantiate("dataset", cfg.dataset)
    data = dataset.load()
    train_idx, val_idx = data.split(val_fraction=dataset.val_fraction, seed=cfg.seed)
    return TrainingSplit(data, train_idx, val_idx, *channel_stats(data, train_idx))


def study_candidates(
    cfg, source: str, split: TrainingSplit, recipe: RetrainRecipe
) -> tuple[str | None, list[StudyTrial]]:
    """The study the results go to (None: no study) and its chosen trials, one per architecture.
    An existing study is used even when the candidates come from elsewhere: baselines are
    recorded beside it."""
    uses_study = source in STUDY_SOURCES
    database = sqlite_path(cfg.storage)
    if not (uses_study or cfg.study_name is not None or (database is not None and database.is_file())):
        return None, []
    with reading_storage(cfg.storage) as storage:
        study = load_existing_study(storage, cfg.study_name)
        info = study.user_attrs.get(STUDY_ATTR, {})
        if info.get("data_fingerprint") not in (None, split.data.fingerprint()):
            raise UserError(
                f"dataset: study {study.study_name!r} was searched on {info.get('dataset')!r}, not on "
                f"{split.data.name!r}; give the dataset settings of its nas search"
            )
        chosen = distinct_architectures(_chosen_trials(cfg, source, study)) if uses_study else []
        candidates = [
            _trial_candidate(trial, same, cfg.init, info, study.study_name, split, recipe)
            for trial, same in chosen
        ]
    return study.study_name, candidates


def distinct_architectures(trials: list[FrozenTrial]) -> list[tuple[FrozenTrial, tuple[int, ...]]]:
    """Each architecture once: its first trial (in the order given) and the numbers of the other
    trials that found it (a sampler suggests an architecture again; training it again would
    spend the budget on a copy)."""
    first: dict[str, FrozenTrial] = {}
    same: dict[str, list[int]] = {}
    for trial in trials:
        key = trial.user_attrs.get("arch_key") or trial_arch(trial).key()
        if key in first:
            same[key].append(trial.number)
        else:
            first[key], same[key] = trial, []
    return [(trial, tuple(same[key])) for key, trial in first.items()]


def _chosen_trials(cfg, source: str, study: optuna.Study) -> list[FrozenTrial]:
    if source == "front":
        chosen = sorted(study.best_trials, key=latency)
        if not chosen:
            raise UserError(f"study {study.study_name!r} has no completed trials; run nas search first")
        return chosen
    if source == "trials":
        return [choose_trial(study, number, None) for number in dict.fromkeys(cfg.trials)]
    return [choose_trial(study, cfg.trial, cfg.latency_budget_ms)]


def _trial_candidate(
    trial: FrozenTrial,
    same: tuple[int, ...],
    init: str,
    info: dict[str, Any],
    study_name: str,
    split: TrainingSplit,
    recipe: RetrainRecipe,
) -> StudyTrial:
    arch = trial_arch(trial)
    if init == "inherit":
        build = functools.partial(inherited_model, info, study_name, trial)
    else:
        build = functools.partial(scratch_model, arch, recipe.seed, split.mean, split.std)
    return StudyTrial(str(trial.number), build, top1(trial), latency(trial), same=same, arch=arch)


def _arch_file_candidate(source: Path, split: TrainingSplit, recipe: RetrainRecipe) -> ArchFile:
    """The architecture in ``source`` (YAML or JSON), which must fit the dataset."""
    if not source.is_file():
        raise UserError(f"arch: {str(source)!r} does not exist")
    try:
        arch = arch_from_dict(yaml.safe_load(source.read_text()))
    except Exception as e:
        raise UserError(f"arch: {source} is not an architecture: {str(e).splitlines()[0]}") from None
    data = split.data
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
    build = functools.partial(scratch_model, arch, recipe.seed, split.mean, split.std)
    return ArchFile(f"arch-{arch.key()}", build, arch=arch)


def timm_candidates(cfg, baselines: Baselines, split: TrainingSplit) -> list[Candidate]:
    """``timm=NAME`` (with its baselines-group arguments, or ``timm_kwargs``), or every model of
    the baselines group; each is built once now, so one that cannot be is a one-line error."""
    models = {cfg.timm: baselines.models.get(cfg.timm, {})} if cfg.timm is not None else baselines.models
    candidates: list[Candidate] = []
    for name, listed in models.items():
        kwargs = dict(cfg.timm_kwargs if cfg.timm_kwargs is not None else listed)
        timm_model(name, split.data, **kwargs)  # checked now: one line if it cannot be built
        build = functools.partial(normalized_timm_model, name, split.data, kwargs, split.mean, split.std)
        candidates.append(TimmBaseline(name, build))
    return candidates


def _measure_latencies(
    profiler: LatencyProfiler | None, candidates: list[Candidate], data: ImageData, console
) -> None:
    """The latency of each candidate that wants it measured here (the baselines), by the
    configured profiler where it can time a bare module (the search's profiler settings give
    figures comparable with the study's; with ``profiler.quantize=int8`` as int8 models)."""
    wanted = [c for c in candidates if c.measures_latency]
    if not wanted or profiler is None:
        return
    if not can_time_modules(profiler):
        console.print(
            f"[yellow]profiler {profiler.name} cannot time a timm model: baselines get no latency[/]"
        )
        return
    shape = (data.in_channels, data.image_size, data.image_size)
    for candidate in wanted:
        candidate.measure(profiler, shape)


def store_results(
    cfg,
    study_name: str,
    candidates: list[Candidate],
    results: dict[str, Retrained],
    recipe: RetrainRecipe,
    int8: dict[str, QuantizedAccuracy] | None = None,
) -> None:
    """Each result as one study attribute (``Candidate.record_key``; nas.records.RunRecord),
    with its int8 figures where it was quantized (``int8``, by candidate name)."""
    storage = open_storage(cfg.storage, cfg.heartbeat_s)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
        for candidate in candidates:
            record = candidate.record(results[candidate.name])
            if int8 and candidate.name in int8:
                record = dataclasses.replace(record, int8=int8[candidate.name].to_dict())
            study.set_user_attr(candidate.record_key(cfg.init, recipe), record.to_dict())
    finally:
        storage.engine.dispose()


def _table(
    study_name: str | None,
    recipe: RetrainRecipe,
    init: str,
    candidates: list[Candidate],
    results: dict[str, Retrained],
    int8: dict[str, QuantizedAccuracy] | None = None,
) -> Table:
    table = Table(
        title=f"nas train ({'study ' + repr(study_name) if study_name else 'no study'}; "
        f"{recipe.epochs} epochs, {recipe.opt} lr {recipe.lr:g}, init {init})"
    )
    columns = ("model", "params", "inherited val top-1", "val top-1", "test top-1")
    columns += ("int8 val top-1", "int8 test top-1") if int8 else ()
    for column in columns + ("latency", "train s", ""):
        table.add_column(column, justify="right" if column != "model" else "left")
    for candidate in candidates:
        r = results[candidate.name]
        table.add_row(
            candidate.label,
            f"{r.params:,}",
            f"{candidate.inherited_top1:.2f}" if candidate.inherited_top1 is not None else "-",
            f"{r.val_top1:.2f}",
            f"{r.test_top1:.2f}" if r.test_top1 is not None else "-",
            *(_int8_cells(int8.get(candidate.name)) if int8 else ()),
            f"{candidate.latency:.4g}" if candidate.latency is not None else "-",
            f"{r.train_seconds:.1f}",
            f"stopped at epoch {r.epochs}" if r.stopped_early else "cached" if r.resumed else "done",
        )
    return table


def _int8_cells(figures: QuantizedAccuracy | None) -> tuple[str, str]:
    if figures is None:
        return "-", "-"
    test = f"{figures.test_top1:.2f}" if figures.test_top1 is not None else "-"
    return f"{figures.top1:.2f}", test

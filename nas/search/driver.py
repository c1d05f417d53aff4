"""``nas search``: open the study, train (or reuse) the supernet, run the workers through the
executor, show progress from the study, and report: the Pareto front as a table, CSV and plot.
Rerunning the same command tops the study up to ``n_trials`` COMPLETE trials, reusing the cached
supernet, and never repeats finished work.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.errors import UserError
from infra.locks import computing
from latency_models import LatencyProfiler
from latency_models._base import checks_itself, measure_arch
from latency_models.cache import LatencyCache
from nas import status
from nas.config import instantiate
from nas.data import ImageData
from nas.records import SEARCH_PHASES_ATTR, STUDY_ATTR, TEST_ATTR
from nas.search.setup import Setup
from nas.search.worker import STOPPED, fail_stale_trials
from nas.study import (
    OBJECTIVES,
    completed,
    open_storage,
    pareto_rows,
    print_pareto,
    results_dir,
    trial_arch,
    write_pareto_files,
)
from nas.supernet_training import evaluate, train_supernet

TEST_BATCH = 1000  # images per forward pass when scoring the front on the test split


def _devices(meta: dict) -> str:
    """Where a supernet trained: "cpu", "NVIDIA H200", or "2 x NVIDIA H200" (supernet.devices)."""
    count = meta.get("devices", 1)
    return f"{count} x {meta['device']}" if count > 1 else meta["device"]


def run_search(setup: Setup, console: Console) -> int:
    """Run the search of ``setup``: 0 when the study holds ``n_trials`` COMPLETE trials."""
    storage = open_storage(setup.cfg.storage, setup.cfg.heartbeat_s)
    try:
        return _search(setup, console, storage)
    finally:
        storage.engine.dispose()  # no connection (nor SQLite side file) outlives the command


def check_identity(study: optuna.Study, identity: dict[str, Any]) -> None:
    """Refuse to add trials to a study whose figures were made under other settings."""
    stored = study.user_attrs.get(STUDY_ATTR)
    if stored is None:
        return
    differing = [k for k in identity if k != "hardware_info" and stored.get(k) != identity[k]]
    if differing:
        raise UserError(
            f"study_name: study {study.study_name!r} was run with a different "
            f"{', '.join(differing)}; its figures would not be comparable. "
            f"Choose another study_name or restore the original settings"
        )


def _open_study(setup: Setup, storage: optuna.storages.RDBStorage) -> optuna.Study:
    study = optuna.create_study(
        study_name=setup.study_name,
        storage=storage,
        directions=[OBJECTIVES[o] for o in setup.objectives],
        load_if_exists=True,
    )
    check_identity(study, setup.identity)
    if not study.trials:  # a new study starts from the space's extremes, whatever the sampler
        for which in ("largest", "smallest"):
            study.enqueue_trial(setup.space.extreme_params(which), user_attrs={"seeded": which})
    samplers = study.user_attrs.get("samplers", [])
    sampler = str(setup.cfg.sampler.get("_target_", "?")).rsplit(".", 1)[-1]
    if sampler not in samplers:  # what drew the trials (nas report compares samplers)
        study.set_user_attr("samplers", [*samplers, sampler])
    if study.metric_names is None:  # optuna-dashboard and the optuna CLI label the objectives
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(setup.objectives)
    return study


def _search(setup: Setup, console: Console, storage: optuna.storages.RDBStorage) -> int:
    cfg = setup.cfg
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = _open_study(setup, storage)
    stale = fail_stale_trials(study)
    if stale:
        console.print(
            f"Trial(s) {', '.join(map(str, stale))} left running by a killed run: failed, retried once."
        )
    done = completed(study)
    folder = results_dir(cfg.storage)
    if len(done) >= cfg.n_trials:
        console.print(
            f"Study [bold]{study.study_name}[/] is complete: {len(done)} completed trials "
            f"(n_trials={cfg.n_trials}); nothing to do."
        )
        write_pareto_files(study, print_pareto(study, console), folder)
        return 0

    console.print(
        f"Study [bold]{study.study_name}[/] in {cfg.storage}: {len(done)}/{cfg.n_trials} completed; "
        f"space {setup.space.name} ({setup.space.size():,} members), dataset {setup.data.name} "
        f"({len(setup.train_idx)} train / {len(setup.val_idx)} val), profiler {setup.profiler.name}"
    )
    console.print(setup.augmentation["line"])
    started = time.perf_counter()
    marks = {"started": time.time()}  # wall clock: trials carry their own datetimes
    trained = train_supernet(
        setup.space,
        setup.space_config,
        setup.data,
        setup.train_idx,
        setup.val_idx,
        setup.split,
        setup.recipe,
        cfg.cache_dir,
        device=cfg.device,
        checkpoint_every_s=cfg.checkpoint_every_s,
        progress=cfg.progress,
    )
    meta = trained.meta
    console.print(
        f"Supernet {'reused from' if trained.reused else 'trained:'} {trained.path} "
        f"({meta['train_seconds']:.0f} s training on {_devices(meta)}; val top-1 largest "
        f"{meta['largest_top1']:.2f} %, smallest {meta['smallest_top1']:.2f} %)"
    )
    study.set_user_attr(
        STUDY_ATTR,
        setup.identity
        | {
            "supernet_path": str(trained.path.resolve()),
            "supernet": meta,
            "augmentation": {k: v for k, v in setup.augmentation.items() if k != "line"},
        },
    )
    supernet = trained.net  # candidates are scored on the training device (batched, like training)
    marks["supernet"] = time.time()
    executor = instantiate("executor", cfg.executor)
    if executor.n_workers > 1:
        console.print(f"{executor.n_workers} workers ({executor.name}) share the study.")
    with _Progress(study, setup, console) as progress:
        statuses = executor.run(setup, supernet, progress.poll, console.print, Path(cfg.cache_dir).resolve())
    marks["workers"] = time.time()

    if len(completed(study)) < cfg.n_trials:
        errors = Console(stderr=True)
        if STOPPED in statuses:
            errors.print(
                f"[red]Stopped: {cfg.max_consecutive_failures} trials in a row failed[/] "
                "(reasons above and in each trial's user attribute fail_reason)."
            )
        else:
            errors.print(f"[red]The workers ended early[/] (exit statuses {statuses}); rerun to continue.")
        return 1
    finished = completed(study)
    sources = Counter(t.user_attrs.get("latency_source") for t in finished)
    console.print(
        f"{len(finished)} completed trials in {time.perf_counter() - started:.0f} s "
        f"(latency: {sources['measured']} measured, {sources['table']} from the latency table, "
        f"{sources['computed']} computed)."
    )
    if setup.data.test is not None:
        test_front(study, supernet, setup.data.test, console)
    rows = print_pareto(study, console)
    if checks_itself(setup.profiler):
        cache = LatencyCache(cfg.storage)
        try:
            check_front(study, setup.profiler, cache, console)
        finally:
            cache.close()
    csv_path, png_path = write_pareto_files(study, rows, folder)
    written = f"{csv_path} and {png_path}" if png_path else f"{csv_path} (no plot for >3 objectives)"
    console.print(f"Pareto front written to {written}")
    record_phases(study, marks, console)
    return 0


def record_phases(study: optuna.Study, marks: dict[str, float], console: Console) -> None:
    """This run's wall time by part, printed and kept with the study (``SEARCH_PHASES_ATTR``):
    the supernet, the workers' start (to this run's first trial), the trials, the workers' end
    (from the last trial), and scoring and writing the front."""
    ran = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.datetime_start is not None and t.datetime_start.timestamp() >= marks["supernet"]
    ]  # fmt: skip
    now = time.time()
    first = min((t.datetime_start.timestamp() for t in ran), default=marks["workers"])
    last = max((t.datetime_complete.timestamp() for t in ran), default=marks["workers"])
    phases = {
        "supernet": marks["supernet"] - marks["started"],
        "workers_start": max(0.0, first - marks["supernet"]),
        "trials": max(0.0, last - first),
        "workers_end": max(0.0, marks["workers"] - last),
        "front": now - marks["workers"],
    }
    phases = {k: round(v, 1) for k, v in phases.items()}
    console.print(
        "Search phases (s): " + ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in phases.items())
    )
    runs = study.user_attrs.get(SEARCH_PHASES_ATTR, [])
    study.set_user_attr(SEARCH_PHASES_ATTR, [*runs, {"n_trials": len(ran), **phases}][-20:])


def test_front(study: optuna.Study, supernet: Any, test: ImageData, console: Console) -> None:
    """Top-1 of every Pareto-front member on the dataset's own test/val split (inherited weights),
    recorded in the study attribute ``test_top1`` (trial number -> %): the final figures, never
    used by the search (finished trials cannot take new attributes)."""
    scores: dict[str, float] = dict(study.user_attrs.get(TEST_ATTR, {}))
    todo = [t for t in study.best_trials if str(t.number) not in scores]
    if not todo:
        return
    images = test.subset(torch.arange(len(test)))  # decoded once if streamed
    with console.status(f"Scoring {len(todo)} front members on {test.name} ({len(test)} images)"):
        for t in todo:
            with computing():
                arch = trial_arch(t)
                scores[str(t.number)] = evaluate(
                    supernet, arch, images.images, images.labels, batch_size=TEST_BATCH
                )
    study.set_user_attr(TEST_ATTR, scores)


class _Progress:
    """A progress bar fed from the study itself, whichever process ran the trials; prints each
    failed trial's reason once."""

    def __init__(self, study: optuna.Study, setup: Setup, console: Console) -> None:
        self.study, self.unit = study, setup.profiler.unit
        self.total, self.console = setup.cfg.n_trials, console
        self.reported = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        self.bar = Progress(
            TextColumn("trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not setup.cfg.progress,
        )

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        self.task = self.bar.add_task(
            "search", total=self.total, completed=len(completed(self.study)), last=""
        )
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def poll(self) -> None:
        """Never while a latency is measured: reading the study costs CPU."""
        with computing():
            trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
        for t in trials:
            if t.state == TrialState.FAIL and t.number not in self.reported:
                self.reported.add(t.number)
                self.console.print(f"[red]trial {t.number} failed:[/] {t.user_attrs.get('fail_reason', '?')}")
        finished = [t for t in trials if t.state == TrialState.COMPLETE]
        last = max(finished, key=lambda t: t.number, default=None)
        summary = ""
        if last is not None and "top1" in last.user_attrs:
            summary = (
                f"#{last.number} top-1 {last.user_attrs['top1']:.1f} % "
                f"{last.user_attrs['latency']['median']:.3g} {self.unit}"
            )
        self.bar.update(self.task, completed=len(finished), last=summary)
        status.report("trials", len(finished), self.total, study=self.study.study_name)


def check_front(
    study: optuna.Study, profiler: LatencyProfiler, cache: LatencyCache, console: Console
) -> None:
    """Measure the Pareto front of a search on a self-checking profiler (the predictor) with its
    reference and compare with the predictions (stored as the study attribute ``front_check``)."""
    numbers = {t.number: t for t in study.trials}
    table = Table(title="Pareto front: predicted vs measured latency")
    for column in ("trials", "predicted ms", "measured ms", "error"):
        table.add_column(column, justify="right")
    checks: dict[str, dict] = {}  # one per architecture (a sampler may suggest one again)
    for row in pareto_rows(study):
        if row["arch_key"] in checks:
            checks[row["arch_key"]]["trials"].append(row["trial"])
            continue
        arch = trial_arch(numbers[row["trial"]])
        measured, _ = measure_arch(profiler.reference, arch, None, cache)
        predicted = numbers[row["trial"]].user_attrs["latency"]["median"]
        checks[row["arch_key"]] = {
            "trials": [row["trial"]],
            "predicted": predicted,
            "measured": measured.median,
            "error": predicted / measured.median - 1,
        }
    for c in checks.values():
        trials = ", ".join(map(str, c["trials"]))
        table.add_row(trials, f"{c['predicted']:.4f}", f"{c['measured']:.4f}", f"{c['error']:+.1%}")
    console.print(table)
    if checks:
        worst = max(abs(c["error"]) for c in checks.values())
        within = sum(abs(c["error"]) <= 0.1 for c in checks.values())
        console.print(
            f"Front: {within} of {len(checks)} architectures within ±10 % of measured; worst {worst:.1%}."
        )
        study.set_user_attr("front_check", list(checks.values()))

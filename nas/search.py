"""``nas search``: score candidates with the weight-sharing supernet, measure their latency,
and keep every trial in an Optuna study in SQL. Rerunning the same command tops the study up
to ``n_trials`` COMPLETE trials, reusing the cached supernet, and never repeats finished work.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nas.config import group_options, instantiate, instantiate_space, to_container
from nas.errors import UserError


@dataclass
class Setup:
    """Everything a search needs, validated before anything is written."""

    cfg: DictConfig
    space: Any  # SearchSpace
    space_config: dict[str, Any]
    data: Any  # ImageData
    train_idx: Any
    val_idx: Any
    split: dict[str, Any]
    recipe: Any  # Recipe
    profiler: Any  # LatencyProfiler
    study_name: str
    objectives: list[str]
    identity: dict[str, Any]  # what the study's figures are valid for
    config_dirs: list[str] = dataclasses.field(default_factory=list)


def prepare(cfg: DictConfig, config_dirs: list[str] = ()) -> Setup:
    """Check everything a search needs and build it, writing nothing (types, ranges and unknown
    keys were checked when the config was composed: nas.schema)."""
    from nas.config import check_writable
    from nas.study import check_storage_url

    if "space" not in cfg:
        valid = ", ".join(group_options("space", config_dirs))
        raise UserError(f"space: none given; add +space=NAME (valid: {valid})")
    check_storage_url(cfg.storage, writing=True)
    check_writable("cache_dir", Path(cfg.cache_dir))
    if str(cfg.device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"device: {cfg.device!r} requested but torch sees no CUDA device")
    dataset = instantiate("dataset", cfg.dataset)
    data = dataset.load()
    space_config = to_container(cfg.space)
    space = instantiate_space(cfg.space, data, config_dirs)
    objectives = list(cfg.objectives)
    if cfg.profiler.get("name") == "predictor" and not cfg.profiler.get("path"):
        from nas.latency import find_predictor

        cfg.profiler.path = str(find_predictor(cfg.cache_dir, space.name))
    profiler = instantiate("profiler", cfg.profiler)
    image_size = profiler.settings().get("image_size")
    if image_size and image_size != data.image_size:  # the deployment resolution must fit the space
        try:
            instantiate_space(cfg.space, data, config_dirs, image_size=image_size)
        except UserError as e:
            raise UserError(
                f"profiler.image_size: {image_size} does not fit space {space.name}: {e}"
            ) from None
    recipe = instantiate("supernet", cfg.supernet)
    split = {"val_fraction": dataset.val_fraction, "seed": cfg.seed}
    train_idx, val_idx = data.split(**split)
    from latency_models.cache import hardware_for
    from nas.hardware import fingerprint
    from nas.train import supernet_key

    identity = {
        "space": space_config,
        "dataset": data.name,
        "data_fingerprint": data.fingerprint(),
        "split": split,
        "supernet_key": supernet_key(space_config, data, split, recipe),
        "objectives": objectives,
        "profiler": {"name": profiler.name, "unit": profiler.unit, "settings": profiler.settings()},
        "hardware": getattr(profiler, "predictor", None).hardware_id
        if profiler.name == "predictor"
        else hardware_for(profiler)[0],
        "hardware_info": fingerprint(),
    }
    study_name = cfg.study_name or f"{space.name}-{data.name}"
    # Validate the sampler config now too (instantiated for real once the study is open).
    instantiate("sampler", cfg.sampler, seed=cfg.seed)
    instantiate("executor", cfg.executor)
    return Setup(
        cfg,
        space,
        space_config,
        data,
        train_idx,
        val_idx,
        split,
        recipe,
        profiler,
        study_name,
        objectives,
        identity,
        list(config_dirs),
    )


def _fail_stale_trials(study) -> list[int]:
    """Fail the trials whose heartbeat stopped (their process was killed); the storage's
    RetryHeartbeatStaleTrialCallback enqueues each again. Returns their numbers."""
    import warnings

    import optuna
    from optuna.trial import TrialState

    def running() -> set[int]:
        return {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}

    before = running()
    if not before:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return sorted(before - running())


def _check_identity(study, identity: dict[str, Any]) -> None:
    from nas.study import STUDY_ATTR

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


def run_search(setup: Setup, console) -> int:
    """Run the search of ``setup``: 0 when the study holds ``n_trials`` COMPLETE trials."""
    from nas.study import open_storage

    storage = open_storage(setup.cfg.storage, setup.cfg.heartbeat_s)
    try:
        return _search(setup, console, storage)
    finally:
        storage.engine.dispose()  # no connection (nor SQLite side file) outlives the command


def _search(setup: Setup, console, storage) -> int:
    import optuna
    from optuna.trial import TrialState

    from nas.study import (
        OBJECTIVES,
        STUDY_ATTR,
        completed,
        print_pareto,
        results_dir,
        write_pareto_files,
    )

    cfg = setup.cfg
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        study_name=setup.study_name,
        storage=storage,
        directions=[OBJECTIVES[o] for o in setup.objectives],
        load_if_exists=True,
    )
    _check_identity(study, setup.identity)
    if study.metric_names is None:  # optuna-dashboard and the optuna CLI label the objectives
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(setup.objectives)
    stale = _fail_stale_trials(study)
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
        rows = print_pareto(study, console)
        write_pareto_files(study, rows, folder)
        return 0

    from nas.train import train_supernet

    console.print(
        f"Study [bold]{study.study_name}[/] in {cfg.storage}: {len(done)}/{cfg.n_trials} completed; "
        f"space {setup.space.name} ({setup.space.size():,} members), dataset {setup.data.name} "
        f"({len(setup.train_idx)} train / {len(setup.val_idx)} val), profiler {setup.profiler.name}"
    )
    t0 = time.perf_counter()
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
        f"({meta['train_seconds']:.0f} s training on {meta['device']}; val top-1 largest "
        f"{meta['largest_top1']:.2f} %, smallest {meta['smallest_top1']:.2f} %)"
    )
    study.set_user_attr(
        STUDY_ATTR, setup.identity | {"supernet_path": str(trained.path.resolve()), "supernet": meta}
    )
    supernet = trained.net.cpu()  # candidates are scored where their latency is measured
    executor = instantiate("executor", cfg.executor)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [
        TextColumn("trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
    ]
    reported = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}

    from latency_models.lock import computing

    def poll() -> None:
        """Progress from the study itself, whichever process ran the trials (never while a
        latency is measured: reading the study costs CPU)."""
        with computing():
            trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
        for t in trials:
            if t.state == TrialState.FAIL and t.number not in reported:
                reported.add(t.number)
                console.print(f"[red]trial {t.number} failed:[/] {t.user_attrs.get('fail_reason', '?')}")
        finished = [t for t in trials if t.state == TrialState.COMPLETE]
        last = max(finished, key=lambda t: t.number, default=None)
        bar.update(
            task,
            completed=len(finished),
            last=f"#{last.number} top-1 {last.user_attrs['top1']:.1f} % "
            f"{last.user_attrs['latency']['median']:.3g} {setup.profiler.unit}"
            if last is not None and "top1" in last.user_attrs
            else "",
        )

    with Progress(*columns, console=console, disable=not cfg.progress) as bar:
        task = bar.add_task("search", total=cfg.n_trials, completed=len(done), last="")
        if executor.name == "local" and executor.n_workers == 1:
            if executor.threads_per_worker:
                import torch

                torch.set_num_threads(executor.threads_per_worker)
            statuses = [work(setup, worker=0, supernet=supernet, after_trial=poll)]
        else:
            from nas.executors import WorkerJob

            console.print(f"{executor.n_workers} workers ({executor.name}) share the study.")
            job = WorkerJob(worker_config(cfg), setup.config_dirs)
            statuses = executor.run(job, poll, console.print, Path(cfg.cache_dir).resolve())
    from nas.executors import STOPPED

    if len(completed(study)) < cfg.n_trials:
        from rich.console import Console

        errors = Console(stderr=True)
        if STOPPED in statuses:
            errors.print(
                f"[red]Stopped: {cfg.max_consecutive_failures} trials in a row failed[/] "
                "(reasons above and in each trial's user attribute fail_reason)."
            )
        else:
            errors.print(f"[red]The workers ended early[/] (exit statuses {statuses}); rerun to continue.")
        return 1
    n_done = len(completed(study))
    sources = Counter(t.user_attrs.get("latency_source") for t in completed(study))
    console.print(
        f"{n_done} completed trials in {time.perf_counter() - t0:.0f} s "
        f"(latency: {sources['measured']} measured, {sources['table']} from the latency table, "
        f"{sources['computed']} computed)."
    )
    rows = print_pareto(study, console)
    if setup.profiler.name == "predictor":
        from latency_models.cache import LatencyCache

        cache = LatencyCache(cfg.storage)
        try:
            check_front(study, setup.profiler, cache, console)
        finally:
            cache.close()
    csv_path, png_path = write_pareto_files(study, rows, folder)
    written = f"{csv_path} and {png_path}" if png_path else f"{csv_path} (no plot for >3 objectives)"
    console.print(f"Pareto front written to {written}")
    return 0


def worker_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config for worker processes: paths made absolute (a worker may start
    elsewhere), no progress bars of their own."""
    from sqlalchemy.engine import make_url

    from nas.study import sqlite_path

    config = to_container(cfg)
    path = sqlite_path(cfg.storage)
    if path is not None:
        url = make_url(cfg.storage).set(database=str(path.resolve()))
        config["storage"] = url.render_as_string(hide_password=False)
    config["cache_dir"] = str(Path(cfg.cache_dir).expanduser().resolve())
    config["progress"] = False
    return config


def work(setup: Setup, worker: int = 0, supernet=None, after_trial=None) -> int:
    """One worker: pull trials from the study until it holds ``n_trials`` COMPLETE ones.

    Exactly ``n_trials``: a worker only asks for a trial while completed + running < n_trials,
    and a trial that finds the quota taken by lower-numbered ones (several workers asked at
    once) is PRUNED unevaluated (user attribute ``surplus``). While the last trials run
    elsewhere it waits: they complete, fail (one more is then needed) or go silent and are
    failed by the heartbeat and retried. Returns DONE, or STOPPED after
    ``max_consecutive_failures`` failures in a row.
    """
    import optuna
    from optuna.trial import TrialState

    from latency_models.lock import computing
    from nas.executors import DONE, STOPPED
    from nas.study import LockedSampler, open_storage

    cfg = setup.cfg
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # Every storage call and sampler step holds the machine-wide lock shared, as scoring does.
    storage = open_storage(cfg.storage, cfg.heartbeat_s, locked=True)
    study = optuna.load_study(study_name=setup.study_name, storage=storage)
    if supernet is None:  # a worker process: the driver trained it, so this loads it from cache_dir
        from nas.train import train_supernet

        args = (setup.space, setup.space_config, setup.data, setup.train_idx, setup.val_idx, setup.split)
        trained = train_supernet(*args, setup.recipe, cfg.cache_dir, device=cfg.device, progress=False)
        supernet = trained.net.cpu()
    sampler = instantiate("sampler", cfg.sampler, seed=cfg.seed + len(study.trials) + 7919 * worker)
    study.sampler = LockedSampler(sampler)
    objective = Objective(setup, supernet, study, worker)
    failures, last = 0, {}
    try:
        while True:
            with computing():
                states = Counter(t.state for t in study.get_trials(deepcopy=False))
            if states[TrialState.COMPLETE] >= cfg.n_trials:
                return DONE
            if states[TrialState.COMPLETE] + states[TrialState.RUNNING] >= cfg.n_trials:
                _fail_stale_trials(study)
                time.sleep(min(1.0, cfg.heartbeat_s))
                continue
            study.optimize(
                objective, n_trials=1, catch=(Exception,), callbacks=[lambda _, t: last.update(trial=t)]
            )
            trial = last.pop("trial", None)
            if after_trial is not None:
                after_trial()
            if trial is not None and trial.state == TrialState.FAIL:
                failures += 1
                if failures >= cfg.max_consecutive_failures:
                    return STOPPED
            elif trial is not None and trial.state == TrialState.COMPLETE:
                failures = 0
    finally:
        objective.cache.close()
        storage.engine.dispose()


def check_front(study, profiler, cache, console) -> None:
    """Measure the Pareto front of a predictor-driven search and compare with the predictions
    (stored as the study attribute ``front_check``)."""
    from rich.table import Table

    from latency_models._base import measure_arch
    from nas.study import pareto_rows, trial_arch

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


class Objective:
    """Scores one trial: inherited top-1 on the validation split, and measured latency."""

    def __init__(self, setup: Setup, supernet, study, worker: int = 0) -> None:
        from latency_models.cache import LatencyCache
        from nas.study import completed

        self.setup, self.supernet, self.study, self.worker = setup, supernet, study, worker
        self.cache = LatencyCache(setup.cfg.storage)
        if setup.profiler.name == "predictor":
            setup.profiler.cache = self.cache  # blocks it lacks are measured through the table
        self.val_images = setup.data.images[setup.val_idx]
        self.val_labels = setup.data.labels[setup.val_idx]
        # Architectures already scored in this study: a repeat suggestion reuses the figures.
        self.seen = {t.user_attrs["arch_key"]: t for t in completed(study) if "arch_key" in t.user_attrs}

    def __call__(self, trial) -> tuple[float, ...]:
        """The trial's objective values; any failure is recorded as its ``fail_reason``."""
        import optuna
        import torch

        try:
            return self._score(trial)
        except optuna.TrialPruned:
            raise
        except Exception as e:
            from latency_models.lock import computing

            with computing():
                trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}"[:500])
            if isinstance(e, torch.OutOfMemoryError) and torch.cuda.is_available():
                torch.cuda.empty_cache()  # give the failed candidate's memory back before the next
            raise

    def _score(self, trial) -> tuple[float, ...]:
        from latency_models._base import measure_arch
        from latency_models.flops import count_flops, count_nonzero_params, count_params
        from latency_models.lock import computing
        from nas.hardware import fingerprint
        from nas.study import objective_value
        from nas.train import activation_sparsity, evaluate

        # Everything that costs CPU runs under the shared lock (SQL writes too), in short
        # pieces: never beside a measurement, and a waiting measurement goes first.
        with computing():
            arch = self.setup.space.suggest(trial)
            key = arch.key()
            trial.set_user_attr("arch_key", key)  # now, so other workers see what this one scores
        earlier = self.seen.get(key) or self._elsewhere(trial, key)
        if earlier is not None:
            with computing():
                for name, value in earlier.user_attrs.items():
                    trial.set_user_attr(name, value)
                trial.set_user_attr("reused_from", earlier.number)
                trial.set_user_attr("worker", self.worker)
            return tuple(earlier.values)
        try:
            start = time.perf_counter()
            # Never while a latency is being measured on this machine; in short steps (one
            # validation batch each), so that a waiting measurement gets the machine soon.
            with computing():
                model = self.supernet.extract(arch)
            images, labels = self.val_images, self.val_labels
            top1 = evaluate(model, None, images, labels, batch_size=200, each_batch=computing)
            with computing():
                flops = count_flops(model, arch.input_shape)
                params, nonzero = count_params(model), count_nonzero_params(model)
                sparsity = round(activation_sparsity(model, self.val_images), 4)
            eval_seconds = time.perf_counter() - start
            start = time.perf_counter()
            profiler = self.setup.profiler
            latency, from_table = measure_arch(profiler, arch, model, self.cache)
            check = None
            if profiler.name == "predictor" and profiler.wants_measurement(arch):
                check, _ = measure_arch(profiler.reference, arch, model, self.cache)
                profiler.add_measurement(arch, check.median)
            latency_seconds = time.perf_counter() - start
        except Exception:
            with computing():
                trial.set_user_attr("arch", arch.to_dict())
            raise
        attrs = {
            "arch": arch.to_dict(),
            "arch_key": key,
            "summary": arch.summary(),
            "top1": top1,
            "params": params,
            "nonzero_params": nonzero,
            "activation_sparsity": sparsity,
            "flops": flops,
            "macs": flops // 2,
            "latency": latency.to_dict(),
            "latency_source": "table"
            if from_table
            else "measured"
            if getattr(profiler, "measured", False)
            else "computed",
            "profiler": {"name": self.setup.profiler.name, "settings": self.setup.profiler.settings()},
            "hardware": fingerprint(),
            "worker": self.worker,
            "eval_seconds": round(eval_seconds, 4),
            "latency_seconds": round(latency_seconds, 4),
        }
        if check is not None:
            attrs["latency_measured"] = check.to_dict()
            attrs["latency_error"] = round(latency.median / check.median - 1, 5)
        with computing():
            for name, value in attrs.items():
                trial.set_user_attr(name, value)
        if not (top1 == top1 and latency.median == latency.median):  # NaN
            raise ValueError("NaN score or latency")
        values = tuple(objective_value(attrs, name) for name in self.setup.objectives)
        self.seen[key] = _Done(attrs, values, trial.number)
        return values

    def _elsewhere(self, trial, key: str):
        """A trial of another worker that scored (or is scoring) this architecture: its figures
        are reused, so nothing is evaluated twice. Raises TrialPruned for a surplus trial."""
        import optuna
        from optuna.trial import TrialState

        from latency_models.lock import computing

        beat = time.monotonic()
        while True:
            with computing():
                states = (TrialState.COMPLETE, TrialState.RUNNING)
                trials = self.study.get_trials(deepcopy=False, states=states)
            ahead = sum(
                t.state == TrialState.COMPLETE or t.number < trial.number
                for t in trials
                if t.number != trial.number
            )
            if ahead >= self.setup.cfg.n_trials:
                trial.set_user_attr("surplus", True)
                raise optuna.TrialPruned("n_trials reached by trials of other workers")
            same = [t for t in trials if t.number != trial.number and t.user_attrs.get("arch_key") == key]
            done = [t for t in same if t.state == TrialState.COMPLETE]
            if done:
                return done[0]
            if not any(t.number < trial.number for t in same):
                return None
            time.sleep(0.2)  # an earlier trial scores it now: wait for its figures
            if time.monotonic() - beat > self.setup.cfg.heartbeat_s:
                _fail_stale_trials(self.study)  # its worker may have been killed
                beat = time.monotonic()


@dataclasses.dataclass
class _Done:
    user_attrs: dict[str, Any]
    values: tuple[float, ...]
    number: int

"""A search worker: pulls trials from the study until it holds ``n_trials`` COMPLETE ones, and
scores each (inherited top-1 on the validation split, measured latency). Whatever starts it (an
executor in this process, a worker process, a Ray task), this is the one loop that runs trials.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from infra.locks import MACHINE, computing, keep_off, work_on
from latency_models._base import checks_itself, measure_arch, reserved_cores
from latency_models.cache import LatencyCache
from latency_models.flops import count_flops, count_nonzero_params, count_params
from latency_models.hardware import device_lock, fingerprint
from latency_models.quantize import quantization_of
from nas.config import instantiate
from nas.quantized import quantized_top1
from nas.records import TrialAttr
from nas.search.setup import Setup
from nas.study import LockedSampler, objective_value, open_storage
from nas.supernet_training import activation_sparsity, evaluate, resolve_device, train_supernet

DONE, STOPPED = 0, 3  # worker exit statuses: n_trials reached; too many failures in a row
SAMPLER_SEED_STRIDE = 7919  # a prime: workers (and reruns) of one study draw different seeds
# Images per scoring step: on a CPU a waiting measurement gets the machine within one step; a GPU
# is kept busy by large batches (scoring holds the lock shared for each batch either way).
VALIDATION_BATCH = {"cpu": 200, "cuda": 2048}


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Fail the trials whose heartbeat stopped (their process was killed); the storage's
    RetryHeartbeatStaleTrialCallback enqueues each again. Returns their numbers."""

    def running() -> set[int]:
        return {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}

    before = running()
    if not before:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return sorted(before - running())


def run_one_trial(study: optuna.Study, objective: Any) -> optuna.trial.FrozenTrial | None:
    """Ask, score and tell one trial; the finished trial, or None where it was finished
    elsewhere while it was scored: failed as stale by another worker (its heartbeat missed on a
    loaded machine) and, retried, possibly run by two. The study keeps one result either way.
    Optuna then refuses the tell (ValueError) or, for a trial failed elsewhere, trips its own
    assertion: either is taken as that only where the storage says the trial was finished."""
    last: dict[str, Any] = {}

    def scored(trial: optuna.Trial) -> Any:
        last["number"] = trial.number
        return objective(trial)

    try:
        study.optimize(scored, n_trials=1, catch=(Exception,), callbacks=[lambda _, t: last.update(trial=t)])
    except (ValueError, AssertionError):
        if "number" not in last:
            raise
        (now,) = [t for t in study.get_trials(deepcopy=False) if t.number == last["number"]]
        if not now.state.is_finished():
            raise
        return None
    return last.get("trial")


def work(setup: Setup, worker: int = 0, supernet: Any = None, after_trial: Any = None) -> int:
    """One worker: pull trials from the study until it holds ``n_trials`` COMPLETE ones.

    Exactly ``n_trials``: a worker only asks for a trial while completed + running < n_trials,
    and a trial that finds the quota taken by lower-numbered ones (several workers asked at
    once) is PRUNED unevaluated (user attribute ``surplus``). While the last trials run
    elsewhere it waits: they complete, fail (one more is then needed) or go silent and are
    failed by the heartbeat and retried. ``supernet``: the trained supernet where the caller
    has it (else it is loaded from ``cache_dir``). Returns DONE, or STOPPED after
    ``max_consecutive_failures`` failures in a row.
    """
    cfg = setup.cfg
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # A worker on a GPU (one per GPU with executor.gpus_per_worker=1) also holds that GPU's lock
    # while it computes: a measurement on its GPU waits for it, one on another GPU does not.
    lock = device_lock(str(resolve_device(cfg.device)))
    work_on(None if lock == MACHINE else lock)
    keep_off(reserved_cores(setup.profiler))  # measurement slots have cores of their own
    # Every storage call and sampler step holds the machine-wide lock shared, as scoring does.
    storage = open_storage(cfg.storage, cfg.heartbeat_s, locked=True)
    study = optuna.load_study(study_name=setup.study_name, storage=storage)
    if supernet is None:  # a worker process: the driver trained it, so this loads it from cache_dir
        args = (setup.space, setup.space_config, setup.data, setup.train_idx, setup.val_idx, setup.split)
        trained = train_supernet(*args, setup.recipe, cfg.cache_dir, device=cfg.device, progress=False)
        supernet = trained.net
    base = cfg.seed if cfg.get("sampler_seed") is None else cfg.sampler_seed
    seed = base + len(study.trials) + SAMPLER_SEED_STRIDE * worker
    study.sampler = LockedSampler(instantiate("sampler", cfg.sampler, seed=seed))
    objective = Objective(setup, supernet, study, worker)
    failures = 0
    try:
        while True:
            with computing():
                states = Counter(t.state for t in study.get_trials(deepcopy=False))
            if states[TrialState.COMPLETE] >= cfg.n_trials:
                return DONE
            if states[TrialState.COMPLETE] + states[TrialState.RUNNING] >= cfg.n_trials:
                fail_stale_trials(study)
                time.sleep(min(1.0, cfg.heartbeat_s))
                continue
            objective.asked_at = time.perf_counter()
            trial = run_one_trial(study, objective)
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


class Objective:
    """Scores one trial: inherited top-1 on the validation split, and measured latency."""

    def __init__(self, setup: Setup, supernet: Any, study: optuna.Study, worker: int = 0) -> None:
        self.setup, self.supernet, self.study, self.worker = setup, supernet, study, worker
        self.asked_at = time.perf_counter()  # when the worker asked for the trial (sampler time)
        self.cache = LatencyCache(setup.cfg.storage)
        self.batch_size = VALIDATION_BATCH.get(
            next(supernet.parameters()).device.type, VALIDATION_BATCH["cpu"]
        )
        val = setup.data.subset(setup.val_idx)  # decoded once when the data is streamed
        self.val_images, self.val_labels = val.images, val.labels

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        """The trial's objective values; any failure is recorded as its ``fail_reason``."""
        try:
            return self._score(trial)
        except optuna.TrialPruned:
            raise
        except Exception as e:
            with computing():
                trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}"[:500])
            if isinstance(e, torch.OutOfMemoryError) and torch.cuda.is_available():
                torch.cuda.empty_cache()  # give the failed candidate's memory back before the next
            raise

    def _score(self, trial: optuna.Trial) -> tuple[float, ...]:
        # Everything that costs CPU runs under the shared lock (SQL writes too), in short
        # pieces: never beside a measurement, and a waiting measurement goes first.
        with computing():
            arch = self.setup.space.suggest(trial)
            key = arch.key()
            trial.set_user_attr("arch_key", key)  # now, so other workers see what this one scores
        ask_seconds = time.perf_counter() - self.asked_at  # the sampler's and the storage's share
        start = time.perf_counter()
        earlier = self._elsewhere(trial, key)  # also prunes a trial beyond the quota
        wait_seconds = time.perf_counter() - start
        if earlier is not None:  # a repeat suggestion: the figures of the trial that scored it
            with computing():
                for name, value in earlier.user_attrs.items():
                    if name not in ("seeded", "reused_from"):
                        trial.set_user_attr(name, value)
                trial.set_user_attr("reused_from", earlier.number)
                trial.set_user_attr("worker", self.worker)
            return tuple(earlier.values)
        try:
            start = time.perf_counter()
            with computing():
                model = self.supernet.extract(arch)
            top1 = evaluate(
                model,
                None,
                self.val_images,
                self.val_labels,
                batch_size=self.batch_size,
                each_batch=computing,
            )
            with computing():
                flops = count_flops(model, arch.input_shape)
                params, nonzero = count_params(model), count_nonzero_params(model)
                sparsity = round(activation_sparsity(model, self.val_images), 4)
            profiler = self.setup.profiler
            int8 = None
            if quantization_of(profiler) is not None:  # the int8 model it measures, scored too
                int8 = quantized_top1(
                    profiler, model, arch.input_shape, self.val_images, self.val_labels, top1, computing
                )
            eval_seconds = time.perf_counter() - start
            start = time.perf_counter()
            latency, from_table = measure_arch(profiler, arch, model, self.cache)
            check = None
            if checks_itself(profiler) and profiler.wants_measurement(arch):
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
            "latency_source": "table" if from_table else "measured" if profiler.measured else "computed",
            "profiler": {"name": profiler.name, "settings": profiler.settings()},
            "hardware": fingerprint(),
            "worker": self.worker,
            "eval_seconds": round(eval_seconds, 4),
            "latency_seconds": round(latency_seconds, 4),
            "ask_seconds": round(ask_seconds, 4),
            "wait_seconds": round(wait_seconds, 4),
        }
        if int8 is not None:
            attrs[TrialAttr.INT8] = int8.to_dict()
        if self.setup.accuracy != "float":  # the accuracy objective scores the int8 model
            attrs[TrialAttr.ACCURACY] = self.setup.accuracy
        if check is not None:
            attrs["latency_measured"] = check.to_dict()
            attrs["latency_error"] = round(latency.median / check.median - 1, 5)
        with computing():
            for name, value in attrs.items():
                trial.set_user_attr(name, value)
        if not (top1 == top1 and latency.median == latency.median):  # NaN
            raise ValueError("NaN score or latency")
        return tuple(objective_value(attrs, name) for name in self.setup.objectives)

    def _elsewhere(self, trial: optuna.Trial, key: str) -> Any:
        """A trial (of any worker or run) that scored, or is scoring, this architecture: its
        figures are reused, so nothing is evaluated twice. Raises TrialPruned for a trial beyond
        the quota (several workers asked at once)."""
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
                fail_stale_trials(self.study)  # its worker may have been killed
                beat = time.monotonic()

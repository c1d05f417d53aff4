"""``nas train trainer=tune``: candidates trained as Ray Tune trials.

Why Tune here and plain Ray tasks in the search: a search trial is a fraction of a second of
scoring that Optuna's sampler must see at once, so search workers are long-lived Ray tasks that
pull trials from the study. Retraining runs for minutes per candidate, reports validation top-1
every epoch and benefits from what Tune adds: a scheduler (ASHA) that stops weak candidates
early, fractional GPUs per trial, and restoring a crashed experiment.

Ray is imported where it is used (startup time): checking the trainer config needs none of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import torch

from nas.search.executors import ray_init
from nas.training.loop import Retrained
from nas.training.trainers import TrainJobs


def mps_running() -> bool:
    """Whether an NVIDIA MPS control daemon is listening where CUDA clients look for it
    (``CUDA_MPS_PIPE_DIRECTORY``, default /tmp/nvidia-mps)."""
    folder = os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or "/tmp/nvidia-mps"
    return os.path.exists(os.path.join(folder, "control"))


def _train_one(config: dict[str, Any], jobs: TrainJobs, gpus: float, cpus: float) -> None:
    """One Tune trial: trains ``jobs.candidates[config["index"]]``, reporting every epoch."""
    from ray import tune

    torch.set_num_threads(max(1, int(cpus)))
    candidate = jobs.candidates[config["index"]]
    started_at = time.time()  # Tune's own "timestamp" is whole seconds

    def report(epoch: int, val_top1: float) -> None:
        tune.report(
            {"val_top1": val_top1, "epoch": epoch, "started_at": started_at, "reported_at": time.time()}
        )

    jobs.train(candidate, device="cuda" if gpus > 0 else "cpu", report=report)


@dataclass(frozen=True)
class TuneTrainer:
    """Each candidate a Tune trial, ``max_concurrent`` at once."""

    max_concurrent: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    scheduler: str = "fifo"
    grace_period: int = 1
    reduction_factor: float = 2.0
    address: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_concurrent, bool) or self.max_concurrent < 1:
            raise ValueError(f"trainer.max_concurrent: expected an integer >= 1, got {self.max_concurrent!r}")
        for key in ("cpus_per_trial", "gpus_per_trial"):
            value = getattr(self, key)
            if value < 0 or (value > 1 and value != int(value)):  # Ray's rule for resource amounts
                raise ValueError(
                    f"trainer.{key}: expected a fraction of 1 or a whole number >= 0, got {value!r}"
                )
        if self.scheduler not in ("asha", "fifo"):
            raise ValueError(f"trainer.scheduler: expected asha or fifo, got {self.scheduler!r}")
        if self.grace_period < 1:
            raise ValueError(f"trainer.grace_period: expected an integer >= 1, got {self.grace_period!r}")
        if self.reduction_factor <= 1:
            raise ValueError(
                f"trainer.reduction_factor: expected a number > 1, got {self.reduction_factor!r}"
            )

    def _scheduler(self, epochs: int) -> Any:
        from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

        if self.scheduler == "fifo":
            return FIFOScheduler()
        return ASHAScheduler(
            metric="val_top1",
            mode="max",
            max_t=epochs,
            grace_period=min(self.grace_period, epochs),
            reduction_factor=self.reduction_factor,
        )

    def run(self, jobs: TrainJobs, console: Any) -> dict[str, Retrained]:
        import ray
        from ray import tune

        names = [c.name for c in jobs.candidates]
        key = hashlib.sha1(
            json.dumps([names, jobs.recipe.key(), jobs.init, jobs.data.name, self.scheduler]).encode()
        ).hexdigest()[:10]
        experiment = f"train-{key}"
        storage = (jobs.cache_dir / "tune").resolve()
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no per-result tables
        if (
            0 < self.gpus_per_trial < 1
            and self.max_concurrent > 1
            and self.address is None
            and not mps_running()
        ):
            console.print(
                "[yellow]trainer.gpus_per_trial < 1 without NVIDIA MPS: the trials sharing a GPU "
                "time-slice it; `nvidia-cuda-mps-control -d` first lets their kernels overlap "
                "(1.6x faster on an H200, README)[/]"
            )
        ray_init(
            self.address,
            self.max_concurrent * self.cpus_per_trial,
            self.max_concurrent * self.gpus_per_trial,
            jobs.cache_dir.resolve(),
        )
        try:
            trainable = tune.with_resources(
                tune.with_parameters(
                    _train_one, jobs=jobs, gpus=self.gpus_per_trial, cpus=self.cpus_per_trial
                ),
                {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial},
            )
            path = storage / experiment
            if tune.Tuner.can_restore(str(path)):  # a crashed or interrupted run of this command
                console.print(f"Restoring the Tune experiment in {path}")
                tuner = tune.Tuner.restore(
                    str(path), trainable=trainable, resume_unfinished=True, resume_errored=True
                )
            else:
                tuner = tune.Tuner(
                    trainable,
                    param_space={"index": tune.grid_search(list(range(len(names))))},
                    tune_config=tune.TuneConfig(
                        scheduler=self._scheduler(jobs.recipe.epochs),
                        max_concurrent_trials=self.max_concurrent,
                    ),
                    run_config=tune.RunConfig(name=experiment, storage_path=str(storage), verbose=0),
                )
            grid = tuner.fit()
        finally:
            ray.shutdown()
        results: dict[str, Retrained] = {}
        for result in grid:
            candidate = jobs.candidates[result.config["index"]]
            finished = Retrained.read(jobs.run_dir(candidate))
            if finished is not None:  # trained to the end (it wrote its figures before its last report)
                results[candidate.name] = finished
                continue
            if result.error is not None or not result.metrics:
                raise RuntimeError(f"Tune trial of {candidate.name} failed: {result.error}")
            metrics = result.metrics  # stopped by the scheduler: the figures of its last epoch
            results[candidate.name] = Retrained(
                val_top1=metrics["val_top1"],
                test_top1=None,
                epochs=int(metrics["epoch"]),
                train_seconds=round(metrics.get("time_total_s", 0.0), 1),
                params=sum(p.numel() for p in candidate.build().parameters()),
                recipe=jobs.recipe.__dict__.copy(),
                init=candidate.init_for(jobs.init),
                device="cuda" if self.gpus_per_trial > 0 else "cpu",
                resumed=False,
                stopped_early=True,
                started_at=metrics.get("started_at", 0.0),
                finished_at=metrics.get("reported_at", 0.0),
            )
        missing = [n for n in names if n not in results]
        if missing:
            raise RuntimeError(f"Tune returned no result for {', '.join(missing)}")
        return results

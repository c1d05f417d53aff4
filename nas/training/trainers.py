"""Who runs the training jobs of ``nas train`` (conf group ``trainer``): the ``Trainer``
contract, the jobs it gets (``TrainJobs``) and ``LocalTrainer``, which runs them one after
another in this process; ``nas.training.tune.TuneTrainer`` runs them as Ray Tune trials."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from latency_models.flops import count_flops
from nas import status
from nas.data import ImageData
from nas.training.candidates import Candidate
from nas.training.loop import Retrained, retrain, run_dir_for
from nas.training.recipe import RetrainRecipe


@dataclass
class TrainJobs:
    """What a trainer runs: each candidate with the same data, split and recipe."""

    candidates: list[Candidate]
    data: ImageData
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    recipe: RetrainRecipe
    init: str  # what the command asked for; each candidate says how it starts (init_for)
    device: str
    checkpoint_every_s: float
    cache_dir: Path
    progress: bool

    def longest_first(self) -> list[int]:
        """The candidates' indices, the costliest training first (FLOPs of a forward pass): when
        several train at once, the long ones then do not start last and leave the device to
        finish alone."""
        shape = (self.data.in_channels, self.data.image_size, self.data.image_size)
        cost = [count_flops(c.build().eval(), shape) for c in self.candidates]
        return sorted(range(len(cost)), key=lambda i: -cost[i])

    def run_dir(self, candidate: Candidate) -> Path:
        init = candidate.init_for(self.init)
        return run_dir_for(self.cache_dir, self.data, candidate.name, self.recipe, init)

    def train(self, candidate: Candidate, device: str | None = None, **hooks: Any) -> Retrained:
        """Train ``candidate`` (or read its finished result); ``hooks``: ``retrain``'s ``report``
        and ``progress``."""
        return retrain(
            candidate.build(),
            self.data,
            self.train_idx,
            self.val_idx,
            self.recipe,
            self.run_dir(candidate),
            device=device or self.device,
            init=candidate.init_for(self.init),
            checkpoint_every_s=self.checkpoint_every_s,
            **hooks,
        )


class Trainer(Protocol):
    """Runs a set of training jobs (conf group ``trainer``): returns each candidate's result by
    name. Implementations: LocalTrainer (one after another, here) and
    nas.training.tune.TuneTrainer (Ray Tune trials, several at once, a scheduler stopping weak
    ones early). A trainer that is run again finds finished runs in their folders and resumes
    unfinished ones from their checkpoints (``TrainJobs.train`` does both)."""

    def run(self, jobs: TrainJobs, console: Any) -> dict[str, Retrained]: ...


@dataclass(frozen=True)
class LocalTrainer:
    """The candidates one after another in this process, with a progress bar each."""

    def run(self, jobs: TrainJobs, console: Any) -> dict[str, Retrained]:
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
                plain = PlainProgress(candidate.name, console) if not jobs.progress else None

                def update(step: int, total: int, loss: float) -> None:
                    bar.update(task, completed=step, total=total, loss=loss)
                    if plain is not None:
                        plain(step, total, loss)

                results[candidate.name] = jobs.train(candidate, progress=update)
        return results


class PlainProgress:
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


_JOBS: list[TrainJobs] = []  # a ProcessTrainer child's jobs, sent once when it starts


def _child_start(jobs: TrainJobs, parent: int, threads: int) -> None:
    from infra.processes import die_with_parent

    die_with_parent(parent)
    torch.set_num_threads(threads)
    _JOBS[:] = [jobs]


def _child_train(index: int) -> Retrained:
    return _JOBS[0].train(_JOBS[0].candidates[index])


@dataclass(frozen=True)
class ProcessTrainer:
    """The candidates in processes of their own, ``concurrent`` at once, all on the jobs' device:
    small models leave a GPU mostly idle (each is bound by its host's kernel launches), so many
    share one well, best with NVIDIA MPS running (README). ``auto``: on CUDA as many as there are
    candidates, at most 12 and the host's cores minus one; on the CPU one (a training uses every
    core). Each process trains with ``cpu count // concurrent`` threads; a killed run resumes
    each candidate from its checkpoint (``TrainJobs.train``)."""

    concurrent: int | str = "auto"

    def __post_init__(self) -> None:
        if self.concurrent != "auto" and (
            isinstance(self.concurrent, bool) or not isinstance(self.concurrent, int) or self.concurrent < 1
        ):
            raise ValueError(f"trainer.concurrent: expected auto or an integer >= 1, got {self.concurrent!r}")

    def processes(self, jobs: TrainJobs) -> int:
        if self.concurrent != "auto":
            return min(int(self.concurrent), max(1, len(jobs.candidates)))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if not str(jobs.device).startswith("cuda"):
            return 1
        return max(1, min(len(jobs.candidates), 12, cores - 1))

    def run(self, jobs: TrainJobs, console: Any) -> dict[str, Retrained]:
        import concurrent.futures

        import torch.multiprocessing as mp

        n = self.processes(jobs)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // n)
        results: dict[str, Retrained] = {}
        status.report("training", 0, len(jobs.candidates))  # the phase shows while the first ones run
        columns = [TextColumn("trainings"), BarColumn(), TextColumn("{task.completed}/{task.total}")]
        columns += [TimeElapsedColumn()]
        with (
            Progress(*columns, console=console, disable=not jobs.progress) as bar,
            concurrent.futures.ProcessPoolExecutor(
                n, mp_context=mp.get_context("spawn"), initializer=_child_start,
                initargs=(jobs, os.getpid(), threads),
            ) as pool,
        ):  # fmt: skip
            task = bar.add_task("trainings", total=len(jobs.candidates))
            futures = {pool.submit(_child_train, i): jobs.candidates[i] for i in jobs.longest_first()}
            for future in concurrent.futures.as_completed(futures):
                candidate = futures[future]
                results[candidate.name] = future.result()
                bar.advance(task)
                status.report("training", len(results), len(jobs.candidates))
                if not jobs.progress:
                    r = results[candidate.name]
                    console.print(
                        f"{'cached' if r.resumed else 'trained'} {candidate.label}: "
                        f"val top-1 {r.val_top1:.2f} %, {r.train_seconds:.0f} s "
                        f"({len(results)} of {len(jobs.candidates)})",
                        highlight=False,
                    )
        return results

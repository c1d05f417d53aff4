"""Executors: which processes run a search's trials (conf group ``executor``).

Every worker, whatever starts it, runs ``nas.search.worker.work``: it opens the study in
``storage`` and has the trained supernet (handed over in this process, or loaded from
``cache_dir``), then pulls trials until the study holds ``n_trials`` COMPLETE ones. The study in
SQL is the only thing workers share, so a worker that dies loses nothing but its running trial,
which the heartbeat fails and retries.

- ``inprocess``: one worker in the driver's own process (no process start, no supernet load).
- ``local``: ``n_workers`` processes on this machine, each with its share of the cores as torch
  threads (one worker: the in-process executor).
- ``ray``: ``n_workers`` Ray tasks, on a cluster at ``address`` or on a local one started here
  (its temporary files under ``<cache_dir>/ray``); each asks Ray for ``cpus_per_worker`` and
  ``gpus_per_worker`` (torch threads = cpus_per_worker).

Measurements never overlap on one machine: a measurement holds the machine-wide lock of
``infra.locks`` exclusively, while candidate scoring holds it shared, so no worker
computes while another times a model (workers on other machines have their own lock).
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from nas.search.process import WorkerJob, local_worker, worker_main
from nas.search.setup import Setup, worker_config
from nas.search.worker import DONE, STOPPED, work

Poll = Callable[[], None]  # called often by the driver's side: progress from the study
Say = Callable[[str], None]  # a line for the user (a worker restarted, ...)


class Executor(Protocol):
    """Runs the workers of a search and returns their exit statuses (DONE or STOPPED each, or a
    process's exit code) once they have ended; calls ``poll`` while they run."""

    name: str
    n_workers: int

    def run(self, setup: Setup, supernet: Any, poll: Poll, say: Say, run_dir: Path) -> list[int]: ...


def job_of(setup: Setup) -> WorkerJob:
    """What a worker process needs to rebuild ``setup``."""
    return WorkerJob(worker_config(setup.cfg), setup.config_dirs)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"executor.{name}: expected a positive integer, got {value!r}")


@dataclass(frozen=True)
class InProcessExecutor:
    """One worker in this process, with the supernet the driver already holds."""

    threads: int | None = None  # torch CPU threads; None: torch's default

    name = "inprocess"
    n_workers = 1

    def __post_init__(self) -> None:
        if self.threads is not None:
            _positive_int("threads", self.threads)

    def run(self, setup: Setup, supernet: Any, poll: Poll, say: Say, run_dir: Path) -> list[int]:
        if self.threads:
            torch.set_num_threads(self.threads)
        return [work(setup, worker=0, supernet=supernet, after_trial=poll)]


@dataclass(frozen=True)
class LocalExecutor:
    """``n_workers`` processes on this machine; a worker that is killed is started again (one
    worker runs in this process: ``InProcessExecutor``)."""

    n_workers: int = 1
    max_restarts: int = 10
    threads_per_worker: int | None = None  # torch CPU threads; None: this machine's cores / n_workers

    name = "local"

    def __post_init__(self) -> None:
        _positive_int("n_workers", self.n_workers)
        restarts = self.max_restarts
        if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 0:
            raise ValueError(f"executor.max_restarts: expected an integer >= 0, got {self.max_restarts!r}")
        if self.threads_per_worker is not None:
            _positive_int("threads_per_worker", self.threads_per_worker)

    def run(self, setup: Setup, supernet: Any, poll: Poll, say: Say, run_dir: Path) -> list[int]:
        if self.n_workers == 1:
            return InProcessExecutor(self.threads_per_worker).run(setup, supernet, poll, say, run_dir)
        job = job_of(setup)
        context = multiprocessing.get_context("spawn")
        threads = self.threads_per_worker or max(1, len(os.sched_getaffinity(0)) // self.n_workers)

        def start(index: int):
            args = (job, index, threads, os.getpid())
            process = context.Process(target=local_worker, args=args, name=f"nas-worker-{index}")
            process.start()
            return process

        running = {i: start(i) for i in range(self.n_workers)}
        statuses: dict[int, int] = {}
        restarts = 0
        try:
            while running:
                time.sleep(0.5)
                poll()
                for index, process in list(running.items()):
                    if process.is_alive():
                        continue
                    code = process.exitcode
                    if code in (DONE, STOPPED) or restarts >= self.max_restarts:
                        statuses[index] = code
                        del running[index]
                        if code not in (DONE, STOPPED):
                            say(f"worker {index} ended with exit code {code}; restarts used up")
                        continue
                    restarts += 1
                    say(f"worker {index} died (exit code {code}); restarted ({restarts}/{self.max_restarts})")
                    running[index] = start(index)
        finally:
            for process in running.values():  # Ctrl-C or an error in the driver
                process.terminate()
            for process in running.values():
                process.join(5)
        poll()
        return [statuses[i] for i in sorted(statuses)]


@dataclass(frozen=True)
class RayExecutor:
    """``n_workers`` Ray tasks, each a worker as above; Ray retries a task whose process died."""

    n_workers: int = 2
    address: str | None = None  # None: start a local Ray; "auto" or "ray://host:10001": connect
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_retries: int = 3

    name = "ray"

    def __post_init__(self) -> None:
        _positive_int("n_workers", self.n_workers)
        for key in ("cpus_per_worker", "gpus_per_worker"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"executor.{key}: expected a number >= 0, got {value!r}")

    def run(self, setup: Setup, supernet: Any, poll: Poll, say: Say, run_dir: Path) -> list[int]:
        job = job_of(setup)
        import ray

        ray_init(
            self.address,
            self.n_workers * self.cpus_per_worker,
            self.n_workers * self.gpus_per_worker,
            run_dir,
        )
        try:
            task = ray.remote(
                num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker, max_retries=self.max_retries
            )(worker_main)
            threads = max(1, int(self.cpus_per_worker))
            pending = [task.remote(job, i, threads) for i in range(self.n_workers)]
            refs = list(pending)
            while pending:
                _, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
                poll()
            return ray.get(refs)
        finally:
            ray.shutdown()


def ray_init(address: str | None, cpus: float, gpus: float, run_dir: Path) -> None:
    """Join the Ray cluster at ``address``, or start a private local one sized for ``cpus`` and
    ``gpus`` with its temporary files under ``run_dir/ray`` (no token files: nothing else joins)."""
    import ray

    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        options |= {
            "num_cpus": max(1, math.ceil(cpus)),
            "num_gpus": math.ceil(gpus),
            "_temp_dir": short_path(run_dir / "ray"),
        }
    else:
        options["address"] = address
    ray.init(**options)


def short_path(folder: Path) -> str:
    """``folder``, or a short link to it in the system's temp dir: Ray puts sockets ~70
    characters below its temp dir, and a Unix socket path may not exceed 107 bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    if len(str(folder)) <= 36:
        return str(folder)
    link = Path(tempfile.gettempdir()) / f"nas-ray-{hashlib.sha1(str(folder).encode()).hexdigest()[:10]}"
    if not (link.is_symlink() and link.resolve() == folder.resolve()):
        link.unlink(missing_ok=True)
        link.symlink_to(folder, target_is_directory=True)
    return str(link)

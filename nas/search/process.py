"""The entry point of a local worker process, kept free of heavy imports: a spawned worker arms
its parent-death signal before it spends seconds importing torch and the search, so that a
driver killed in that window still takes its workers with it. (The one place outside the CLI
that imports the project's modules inside a function, for that reason.)"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from infra.processes import die_with_parent


@dataclass(frozen=True)
class WorkerJob:
    """What a worker process needs to rebuild the search: the resolved config and its dirs."""

    config: dict[str, Any]
    config_dirs: list[str] = field(default_factory=list)


def worker_main(job: WorkerJob, index: int, threads: int = 0) -> int:
    """A worker (a local process or a Ray task): rebuild the search from ``job`` and run it.
    Returns DONE or STOPPED. ``threads`` > 0 caps torch's CPU threads, so that K workers on one
    machine share its cores instead of fighting."""
    import torch  # seconds of imports: after the parent-death signal is armed
    from omegaconf import OmegaConf

    from nas.search.setup import prepare
    from nas.search.worker import work

    if threads > 0:
        torch.set_num_threads(threads)
    return work(prepare(OmegaConf.create(job.config), job.config_dirs), worker=index)


def local_worker(job: WorkerJob, index: int, threads: int, parent: int) -> None:
    """Target of a local worker process: DONE or STOPPED as its exit code."""
    die_with_parent(parent)
    os._exit(worker_main(job, index, threads))

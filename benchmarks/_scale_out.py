"""What the scale-out scripts share: real ``nas search +space=vit`` runs in subprocesses (one
epoch of supernet training, shared through the work folder's cache: accuracy is not under test),
a census of what a study holds afterwards, and a background search that can be stopped and
continued as a whole."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks._harness import nas_command, run_nas, search_env

BASE = ["search", "+space=vit", "supernet.epochs=1", "progress=false"]
LOCK_WORDS = ("database is locked", "deadlock", "could not serialize", "lock timeout", "LockNotAvailable")


def add_common_arguments(parser: argparse.ArgumentParser, workers: int | None) -> None:
    parser.add_argument("--workdir", default="/tmp/nas-scale-out", help="databases, logs, supernet cache")
    if workers is not None:
        parser.add_argument("--workers", type=int, default=workers, help="executor.n_workers of the search")
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides, e.g. profiler.runs=50")
    parser.add_argument("--out", default=None, help="result JSON (default: in --workdir)")


def workdir_of(args) -> Path:
    workdir = Path(args.workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def sqlite_url(workdir: Path, name: str) -> str:
    """A new SQLite database in ``workdir``."""
    return f"sqlite:///{workdir / f'{name}_{uuid.uuid4().hex[:6]}.db'}"


def search(workdir: Path, overrides: list[str], log_name: str) -> float:
    """One ``nas search`` (BASE + overrides) in ``workdir``; its wall time."""
    return run_nas(
        [*BASE, f"cache_dir={workdir / 'cache'}", *overrides], workdir, workdir / f"{log_name}.log"
    )


def load_study(storage: str, study_name: str):
    import optuna

    return optuna.load_study(study_name=study_name, storage=storage)


def complete_trials(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def census(storage: str, study_name: str, log: Path) -> dict[str, Any]:
    """What the study holds: completed, lost, duplicated evaluations, lock errors, throughput."""
    from optuna.trial import TrialState

    trials = load_study(storage, study_name).get_trials(deepcopy=False)
    by_state = Counter(t.state.name for t in trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    scored = [t.user_attrs["arch_key"] for t in complete if "reused_from" not in t.user_attrs]
    reasons = [t.user_attrs.get("fail_reason", "") for t in trials if t.state == TrialState.FAIL]
    text = log.read_text()
    lock_errors = sum(any(w in r for w in LOCK_WORDS) for r in reasons)
    lock_errors += sum(text.count(w) for w in LOCK_WORDS)
    span = (
        max(t.datetime_complete for t in complete) - min(t.datetime_start for t in complete)
    ).total_seconds()
    return {
        "trials": len(trials),
        "states": dict(by_state),
        "completed": len(complete),
        "lost": by_state.get("RUNNING", 0) + by_state.get("WAITING", 0),
        "evaluated": len(scored),
        "duplicated": len(scored) - len(set(scored)),
        "reused": len(complete) - len(scored),
        "surplus_pruned": sum(bool(t.user_attrs.get("surplus")) for t in trials),
        "failed": len(reasons),
        "fail_reasons": dict(Counter(r.split(":")[0] for r in reasons)),
        "lock_errors": lock_errors,
        "per_worker": dict(Counter(str(t.user_attrs.get("worker")) for t in complete)),
        "trial_span_s": round(span, 2),
        "trials_per_s": round(len(complete) / span, 4),
    }


def all_stopped(group: int) -> bool:
    """Whether every thread of every process in process group ``group`` is stopped (state T)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != group:  # fields after the name: state ppid pgrp
                continue
            states = [
                (task / "stat").read_text().rsplit(")", 1)[1].split()[0] for task in (proc / "task").iterdir()
            ]
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
        if any(state not in "tTZX" for state in states):
            return False
    return True


class Background:
    """A ``nas search`` (``workers`` workers, ``profiler``, random sampler, no end) run in the
    background in its own process group, so that it can be stopped and continued as a whole."""

    def __init__(self, workdir: Path, name: str, workers: int, profiler: str, extra: list[str]) -> None:
        self.storage = sqlite_url(workdir, name)
        self.study_name = f"background-{workers}w"
        overrides = [f"storage={self.storage}", f"study_name={self.study_name}", "n_trials=1000000"]
        overrides += ["heartbeat_s=60", f"executor.n_workers={workers}", f"profiler={profiler}"]
        self.log = open(workdir / f"{name}_background.log", "w")
        self.process = subprocess.Popen(
            nas_command(*BASE, f"cache_dir={workdir / 'cache'}", "sampler=random", *overrides, *extra),
            cwd=workdir,
            env=search_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the driver and its workers together
        )

    def study(self):
        return load_study(self.storage, self.study_name)

    def completed(self) -> int:
        try:
            return len(complete_trials(self.study()))
        except KeyError:  # no study yet
            return 0

    def wait_for(self, n: int) -> None:
        """Until ``n`` trials completed (the supernet is trained and the workers run)."""
        while self.completed() < n:
            if self.process.poll() is not None:
                sys.exit(f"background search ended (exit {self.process.returncode}); see {self.log.name}")
            time.sleep(2)

    def signal(self, sig: int) -> None:
        """SIGSTOP / SIGCONT the whole search. Sent while this process holds the measurement
        lock, so no worker holds it; the lock is kept until every thread of the group has
        stopped, so none is woken to take it between the signal and the stop (which left a
        stopped worker holding the lock in a first try)."""
        from infra.locks import measuring

        with measuring():
            os.killpg(self.process.pid, sig)
            deadline = time.monotonic() + 30
            while sig == signal.SIGSTOP and not all_stopped(self.process.pid):
                if time.monotonic() > deadline:
                    sys.exit("background search did not stop within 30 s")
                time.sleep(0.01)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.log.close()

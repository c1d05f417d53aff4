"""kill -9 of a running search, then the same command again: it continues and ends with
exactly n_trials COMPLETE, the killed trial retried, nothing evaluated twice by accident."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from tests.conftest import REPO, nas_in_process

ARGS = ["search", "+space=tiny", "supernet.epochs=1", "profiler.runs=10", "profiler.warmup=2"]
ARGS += ["n_trials=16", "heartbeat_s=1", "progress=false"]


def _trials(storage):
    try:  # the search may be creating its tables right now
        study = optuna.load_study(study_name="tiny-fashion_mnist_6k", storage=storage)
        return study.get_trials(deepcopy=False)
    except Exception:
        return []


@pytest.mark.slow
def test_kill_9_during_the_search_then_the_same_command_finishes_it(tmp_path):
    storage = f"sqlite:///{tmp_path}/nas.db"
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas", *ARGS],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    killed_running = []
    while time.time() < deadline and proc.poll() is None:
        trials = _trials(storage) if (tmp_path / "nas.db").exists() else []
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if len(complete) >= 4 and running:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.02)
    assert proc.returncode == -signal.SIGKILL, "the search ended before it could be killed"
    killed_running = [t.number for t in _trials(storage) if t.state == TrialState.RUNNING]
    assert len(killed_running) == 1

    time.sleep(4)  # > 3 x heartbeat_s: the killed trial's heartbeat is stale
    rerun = nas_in_process(*ARGS, cwd=tmp_path)  # the same command again, here
    assert rerun.returncode == 0, rerun.stderr
    assert "left running by a killed run" in rerun.stdout

    trials = _trials(storage)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 16
    (dead,) = killed_running
    assert next(t for t in trials if t.number == dead).state == TrialState.FAIL
    retried = [t for t in complete if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == dead]
    # Retried with the killed trial's parameters (if it was killed while suggesting, the ones it had).
    assert len(retried) == 1
    assert next(t for t in trials if t.number == dead).params.items() <= retried[0].params.items()
    # Every architecture was scored once; repeats of a suggestion reuse the earlier figures.
    scored = [t.user_attrs["arch_key"] for t in complete if "reused_from" not in t.user_attrs]
    assert len(scored) == len(set(scored))
    assert not [t for t in trials if t.state == TrialState.RUNNING]

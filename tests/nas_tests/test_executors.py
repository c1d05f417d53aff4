"""Executors: several local worker processes and Ray share one study; kill -9 of a worker or of
the driver loses nothing; the study ends with exactly n_trials COMPLETE and every architecture
scored once."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from tests.conftest import REPO, nas_in_process, run_nas

STUDY = "tiny-fashion_mnist_6k"
BASE = ["search", "+space=tiny", "supernet.epochs=1", "profiler=flops", "heartbeat_s=1", "progress=false"]


def _trials(storage: str) -> list:
    try:  # the search may be creating its tables right now
        return optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)
    except Exception:
        return []


def _assert_exact_and_scored_once(storage: str, n_trials: int) -> list:
    trials = _trials(storage)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n_trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    scored = [t.user_attrs["arch_key"] for t in complete if "reused_from" not in t.user_attrs]
    assert len(scored) == len(set(scored)), "an architecture was evaluated twice"
    for t in complete:
        if "reused_from" in t.user_attrs:
            earlier = next(e for e in trials if e.number == t.user_attrs["reused_from"])
            assert earlier.user_attrs["arch_key"] == t.user_attrs["arch_key"] and earlier.values == t.values
    return trials


def _children(pid: int) -> list[int]:
    """The live worker processes of a driver (not multiprocessing's resource tracker)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    workers = []
    for child in map(int, out.split()):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in command and _alive(child):
            workers.append(child)
    return workers


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_two_local_workers_share_the_study_and_stop_at_exactly_n_trials(tmp_path):
    # The tiny space has 64 members; 30 trials from two samplers repeat some: reused, not rescored.
    result = nas_in_process(*BASE, "executor.n_workers=2", "n_trials=30", cwd=tmp_path)  # driver here
    assert result.returncode == 0, result.stderr
    assert "2 workers (local) share the study" in result.stdout
    trials = _assert_exact_and_scored_once(f"sqlite:///{tmp_path}/nas.db", 30)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert {t.user_attrs["worker"] for t in complete} == {0, 1}
    surplus = [t for t in trials if t.state == TrialState.PRUNED]
    assert all(t.user_attrs.get("surplus") for t in surplus)
    assert len(surplus) <= 1  # two workers: at most one asked for a trial the other filled


@pytest.mark.slow
@pytest.mark.whole_machine  # a driver and two workers, each wanting a core
def test_kill_9_of_a_worker_and_of_the_driver_then_the_same_command_finishes(tmp_path):
    storage = f"sqlite:///{tmp_path}/nas.db"
    n = 16  # enough that both kills (after ~2 and ~5 trials) happen well before the end
    args = [*BASE, "executor.n_workers=2", f"n_trials={n}", "profiler=onnxruntime", "profiler.runs=10"]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    log = open(tmp_path / "driver.log", "w")
    command = [sys.executable, "-m", "nas", *args]
    driver = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=log)

    def wait_for(condition, what: str):
        deadline = time.time() + 240
        while time.time() < deadline and driver.poll() is None:
            trials = _trials(storage) if (tmp_path / "nas.db").exists() else []
            if condition(trials):
                return trials
            time.sleep(0.05)
        pytest.fail(f"the search ended or stalled before {what}: {(tmp_path / 'driver.log').read_text()}")

    def complete(trials):
        return [t for t in trials if t.state == TrialState.COMPLETE]

    # 1. kill -9 one worker while it runs a trial: the driver starts it again.
    trials = wait_for(lambda ts: len(complete(ts)) >= 2 and len(_children(driver.pid)) >= 2, "2 trials")
    workers = _children(driver.pid)
    victim = workers[0]
    os.kill(victim, signal.SIGKILL)
    killed_at = len(complete(_trials(storage)))
    restarted = lambda: victim not in _children(driver.pid) and len(_children(driver.pid)) >= 2  # noqa: E731
    wait_for(
        lambda ts: len(complete(ts)) >= killed_at + 3 and restarted(), "a restarted worker and 3 more trials"
    )

    # 2. kill -9 the driver: its workers die with it (PR_SET_PDEATHSIG), trials stay RUNNING.
    wait_for(lambda ts: any(t.state == TrialState.RUNNING for t in ts), "a running trial")
    workers = _children(driver.pid)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers), "workers outlived the killed driver"
    before = _trials(storage)
    assert len(complete(before)) < n

    time.sleep(4)  # > 3 x heartbeat_s: the dead trials' heartbeats are stale
    rerun = nas_in_process(*args, cwd=tmp_path)  # the same command again (its driver here)
    assert rerun.returncode == 0, rerun.stderr
    trials = _assert_exact_and_scored_once(storage, n)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed, "the killed trials were not failed by their heartbeat"
    retried = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials}
    for dead in failed:  # each killed trial was run again with its parameters (or its quota filled)
        assert dead.number in retried or len(complete(trials)) == n
    log.close()


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray at a time (test_ray_jobs.py says why)
def test_ray_runs_the_same_search_to_the_same_number_of_trials(tmp_path):
    cache = tmp_path / "c"  # short: Ray's socket paths live under <cache_dir>/ray
    result = run_nas(
        *BASE, "executor=ray", "executor.n_workers=2", "n_trials=12", f"cache_dir={cache}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    trials = _assert_exact_and_scored_once(f"sqlite:///{tmp_path}/nas.db", 12)
    assert {t.user_attrs["worker"] for t in trials if t.state == TrialState.COMPLETE} <= {0, 1}
    assert any(Path(cache, "ray").iterdir()), "Ray's temporary files are not under the run's cache_dir"


@pytest.mark.slow
def test_two_workers_on_postgresql(tmp_path, postgres_url):
    result = nas_in_process(
        *BASE, "executor.n_workers=2", "n_trials=10", f"storage={postgres_url}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    _assert_exact_and_scored_once(postgres_url, 10)


@pytest.mark.parametrize(
    "override, key",
    [
        ("executor.n_workers=0", "executor.n_workers"),
        ("executor.max_restarts=-1", "executor.max_restarts"),
        ("executor.threads_per_worker=0", "executor.threads_per_worker"),
        ("executor.bogus=1", "executor"),
    ],
)
def test_bad_executor_settings_are_one_line_errors(tmp_path, override, key):
    result = nas_in_process("search", "+space=tiny", override, cwd=tmp_path)
    assert result.returncode == 2
    assert key in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "nas.db").exists()

"""Worker bookkeeping under the measurement lock: LockedRDBStorage and LockedSampler wait for a
measurement in another process (real SQLite, real flock, real Optuna study)."""

import multiprocessing
import time

import optuna
import pytest

from nas.study import LockedSampler, open_storage


def _measure_for(locks: str, log: str, hold_s: float) -> None:
    import os

    os.environ["NAS_LOCK_DIR"] = locks
    from latency_models.lock import measuring

    with measuring():
        with open(log, "a") as f:
            f.write(f"start {time.time()}\n")
        time.sleep(hold_s)
        with open(log, "a") as f:
            f.write(f"end {time.time()}\n")


def _while_measuring(tmp_path, action) -> tuple[float, float]:
    """Runs ``action`` while another process measures; returns (measurement end, action end)."""
    log = tmp_path / "measure.log"
    holder = multiprocessing.get_context("spawn").Process(
        target=_measure_for, args=(str(tmp_path / "locks"), str(log), 1.0)
    )
    holder.start()
    while not log.exists():
        time.sleep(0.01)
    action()
    finished = time.time()
    holder.join(30)
    assert holder.exitcode == 0
    events = dict(line.split() for line in log.read_text().splitlines())
    return float(events["end"]), finished


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_locked_storage_waits_for_a_measurement(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", locked=True)
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)  # usable as any storage
    ended, asked = _while_measuring(tmp_path, study.ask)
    assert asked >= ended
    assert len(study.trials) == 3


def test_locked_sampler_waits_for_a_measurement(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    sampler = LockedSampler(optuna.samplers.TPESampler(seed=0, n_startup_trials=2))
    study = optuna.create_study(sampler=sampler)  # in memory: only the sampler takes the lock
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=4)
    ended, sampled = _while_measuring(tmp_path, lambda: study.ask().suggest_float("x", 0, 1))
    assert sampled >= ended
    assert str(sampler) == "TPESampler" and sampler._n_startup_trials == 2  # passed through

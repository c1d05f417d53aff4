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
    from infra.locks import measuring

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


@pytest.mark.parametrize("locked", [False, True])
def test_a_running_trial_without_any_heartbeat_is_failed_and_retried(tmp_path, locked):
    """A worker killed between starting a trial and its first heartbeat: Optuna never fails such
    a trial, and a search would wait for it for ever. Ours beats as the trial starts, and fails a
    silent one after a grace (here its start is moved back instead of sleeping)."""
    import datetime

    import sqlalchemy as sa

    from nas.optuna_internals import NO_HEARTBEAT_GRACE_S, models
    from nas.search.worker import fail_stale_trials

    storage = open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat_s=1, locked=locked)
    study = optuna.create_study(study_name="s", storage=storage)
    started = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    with storage.engine.connect() as connection:  # the start beat is written with the trial
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(models.TrialHeartbeatModel)).scalar()
            == 1
        )
    study.tell(started, 0.5)

    # A trial whose process died before any heartbeat (the plain RDBStorage writes none).
    study.enqueue_trial({"x": 0.25})
    (waiting,) = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert optuna.storages.RDBStorage.set_trial_state_values(
        storage, waiting._trial_id, optuna.trial.TrialState.RUNNING
    )
    assert fail_stale_trials(study) == []  # within the grace: it may still be starting
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(
        seconds=2 * NO_HEARTBEAT_GRACE_S + 60
    )
    with storage.engine.begin() as connection:
        connection.execute(
            sa.update(models.TrialModel.__table__)
            .where(models.TrialModel.__table__.c.trial_id == waiting._trial_id)
            .values(datetime_start=long_ago.replace(tzinfo=None))
        )
    assert fail_stale_trials(study) == [waiting.number]
    (retried,) = study.get_trials(states=(optuna.trial.TrialState.WAITING,))  # enqueued again
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retried) == waiting.number
    storage.engine.dispose()

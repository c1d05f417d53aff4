"""Everything nas takes from Optuna beyond its public API, in one place, with why.

* ``models``: Optuna's SQLAlchemy table definitions (``optuna.storages._rdb.models``). The
  service reads a study of 10,000 trials straight from them (web.queries: objective values
  decide the front, the order and a page; attributes are read only for the trials shown), where
  Optuna's public ``get_trials`` loads every attribute of every trial (seconds at that size).
* ``HeartbeatRDBStorage``: overrides ``RDBStorage._create_new_trial`` (the one method both
  ``create_new_trial`` and Optuna's cached storage call) to beat as a trial starts, and
  ``_get_stale_trial_ids`` (what ``optuna.storages.fail_stale_trials`` asks) to also count a
  running trial that never beat, reading the trials with ``_create_scoped_session``. Optuna
  never fails a trial whose process died before its first heartbeat, and a search would wait
  for it for ever.

tests/nas_tests/test_optuna_internals.py checks each of these against the installed Optuna, so
an upgrade that changes them fails there, loudly, rather than in a user's search.
"""

from __future__ import annotations

import datetime

import optuna
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

__all__ = ["NO_HEARTBEAT_GRACE_S", "HeartbeatRDBStorage", "models"]

# A RUNNING trial with no heartbeat at all after this long is stale too (its process died between
# starting the trial and its first beat). Optuna never fails such a trial, and a search would
# wait for it for ever; the first beat is written with the start (below), so this is a fallback.
NO_HEARTBEAT_GRACE_S = 30.0


class HeartbeatRDBStorage(optuna.storages.RDBStorage):
    """An RDBStorage that beats once as a trial starts (Optuna's heartbeat thread beats a moment
    later, after a sampler step and, in a search worker, after waiting for the machine-wide
    lock: a worker killed in that window left a RUNNING trial that no heartbeat check could
    fail), and that counts a running trial without any heartbeat as stale after a grace."""

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        trial = super()._create_new_trial(study_id, template_trial)  # Optuna's cache calls this one
        if trial.state == TrialState.RUNNING:
            self.record_heartbeat(trial._trial_id)
        return trial

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        changed = super().set_trial_state_values(trial_id, state, values)
        if changed and state == TrialState.RUNNING:  # a WAITING (enqueued) trial starts
            self.record_heartbeat(trial_id)
        return changed

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = super()._get_stale_trial_ids(study_id)
        cutoff = datetime.datetime.now() - datetime.timedelta(
            seconds=max(NO_HEARTBEAT_GRACE_S, 2 * (self.grace_period or 0))
        )
        with _create_scoped_session(self.scoped_session) as session:
            silent = (
                session.query(models.TrialModel)
                .filter(models.TrialModel.study_id == study_id)
                .filter(models.TrialModel.state == TrialState.RUNNING)
                .filter(~models.TrialModel.heartbeats.any())
                .all()
            )  # datetime_start: local time, as datetime.now()
            dead = [t.trial_id for t in silent if t.datetime_start and t.datetime_start < cutoff]
        return stale + [trial_id for trial_id in dead if trial_id not in stale]

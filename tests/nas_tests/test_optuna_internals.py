"""What nas takes from Optuna beyond its public API (nas.optuna_internals) still holds for the
installed Optuna: an upgrade that changes it fails here, not in a user's search or page."""

import inspect

import optuna
import sqlalchemy as sa

from nas.optuna_internals import HeartbeatRDBStorage, models


def test_the_tables_the_service_reads_have_the_columns_it_uses():
    expected = {
        models.TrialModel: {"trial_id", "number", "study_id", "state", "datetime_start", "datetime_complete"},
        models.TrialValueModel: {"trial_id", "objective", "value"},
        models.TrialUserAttributeModel: {"trial_id", "key", "value_json"},
        models.TrialHeartbeatModel: {"trial_id", "heartbeat"},
    }
    for model, columns in expected.items():
        assert columns <= set(model.__table__.columns.keys()), model.__tablename__


def test_the_rows_the_service_reads_are_where_it_reads_them(tmp_path):
    """A trial written through Optuna's public API shows in those columns as web.queries reads
    them: its objective values by index, its attributes as JSON, its state as the enum."""
    import json

    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(storage=url, directions=["maximize", "minimize"])
    trial = study.ask()
    trial.set_user_attr("top1", 71.5)
    study.tell(trial, [71.5, 0.25])
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        T, V, A = (
            m.__table__ for m in (models.TrialModel, models.TrialValueModel, models.TrialUserAttributeModel)
        )
        (state,) = connection.execute(sa.select(T.c.state)).one()
        values = dict(connection.execute(sa.select(V.c.objective, V.c.value)).all())
        (attr,) = connection.execute(sa.select(A.c.value_json).where(A.c.key == "top1")).one()
    engine.dispose()
    assert state == optuna.trial.TrialState.COMPLETE
    assert values == {0: 71.5, 1: 0.25} and json.loads(attr) == 71.5


def test_the_private_methods_overridden_are_the_ones_optuna_calls():
    """HeartbeatRDBStorage overrides ``_create_new_trial`` and ``_get_stale_trial_ids``: both
    still exist on RDBStorage with the signatures overridden, and Optuna's public entry points
    reach them (create_new_trial -> _create_new_trial; fail_stale_trials -> _get_stale_trial_ids)."""
    for name in ("_create_new_trial", "_get_stale_trial_ids"):
        ours = inspect.signature(getattr(HeartbeatRDBStorage, name))
        theirs = inspect.signature(getattr(optuna.storages.RDBStorage, name))
        assert list(ours.parameters) == list(theirs.parameters), name
    assert "_create_new_trial" in inspect.getsource(optuna.storages.RDBStorage.create_new_trial)
    assert "_get_stale_trial_ids" in inspect.getsource(optuna.storages.fail_stale_trials)
    from optuna.storages._rdb.storage import _create_scoped_session  # noqa: F401 - still there

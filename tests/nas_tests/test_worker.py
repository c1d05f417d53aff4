"""The search worker in this process (no subprocess): the quota loop stops at exactly
n_trials, a repeated architecture reuses its figures, and every failure is recorded."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
from optuna.trial import TrialState

from latency_models import LatencyResult
from nas.config import compose, instantiate
from nas.search.executors import InProcessExecutor, LocalExecutor, RayExecutor
from nas.search.setup import prepare
from nas.search.worker import DONE, STOPPED, work
from nas.study import OBJECTIVES, open_storage
from nas.supernet_training import train_supernet


@pytest.fixture
def setup_and_supernet(tmp_path):
    def make(*overrides: str):
        cfg = compose(
            [
                "+space=tiny",
                "supernet.epochs=1",
                "profiler=flops",
                f"storage=sqlite:///{tmp_path}/nas.db",
                f"cache_dir={tmp_path}/cache",
                "heartbeat_s=1",
                *overrides,
            ]
        )
        setup = prepare(cfg)
        trained = train_supernet(
            setup.space, setup.space_config, setup.data, setup.train_idx, setup.val_idx, setup.split,
            setup.recipe, cfg.cache_dir, progress=False,
        )  # fmt: skip
        storage = open_storage(cfg.storage)
        optuna.create_study(
            study_name=setup.study_name, storage=storage, directions=[OBJECTIVES[o] for o in setup.objectives]
        )
        storage.engine.dispose()
        return setup, trained.net.cpu()

    return make


def _trials(setup):
    return optuna.load_study(study_name=setup.study_name, storage=setup.cfg.storage).get_trials()


def test_work_stops_at_exactly_n_trials_and_reports_each(setup_and_supernet):
    setup, supernet = setup_and_supernet("n_trials=7")
    calls = []
    assert work(setup, supernet=supernet, after_trial=lambda: calls.append(1)) == DONE
    trials = _trials(setup)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 7 and len(calls) == 7
    for t in trials:
        assert {"arch", "arch_key", "top1", "latency", "flops", "params"} <= set(t.user_attrs)
        # each part of a trial's wall time (benchmarks/setup_trial_costs.py sums them)
        for part in ("ask", "wait", "eval", "latency"):
            assert t.user_attrs[f"{part}_seconds"] >= 0
        assert t.user_attrs["latency_source"] == "computed" and t.values[0] == t.user_attrs["top1"]
    # a rerun of the worker on the complete study does nothing
    assert work(setup, supernet=supernet) == DONE and len(_trials(setup)) == 7


def test_a_repeated_architecture_reuses_its_figures(setup_and_supernet):
    setup, supernet = setup_and_supernet(
        "n_trials=3", "space.patch_size=[7]", "space.embed_dim=[16]", "space.depth=[1,1]",
        "space.num_heads=[1]", "space.mlp_ratio=[1]", "space.attention=[linear]", "space.activation=[relu]",
    )  # fmt: skip
    assert setup.space.size() == 1
    assert work(setup, supernet=supernet) == DONE
    first, *rest = _trials(setup)
    assert "reused_from" not in first.user_attrs
    assert [t.user_attrs["reused_from"] for t in rest] == [first.number] * 2
    assert all(t.values == first.values for t in rest)


class Failing:
    name, unit, measured = "failing", "ms", False

    def settings(self):
        return {}

    def measure(self, arch, model=None) -> LatencyResult:
        raise RuntimeError("device lost")


def test_failures_are_recorded_and_stop_the_worker(setup_and_supernet):
    setup, supernet = setup_and_supernet("n_trials=5", "max_consecutive_failures=2")
    setup = dataclasses.replace(setup, profiler=Failing())
    assert work(setup, supernet=supernet) == STOPPED
    trials = _trials(setup)
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    for t in trials:
        assert t.user_attrs["fail_reason"] == "RuntimeError: device lost" and "arch" in t.user_attrs


def test_every_executor_is_built_from_its_config_and_one_local_worker_runs_in_process(setup_and_supernet):
    for name, kind in (("inprocess", InProcessExecutor), ("local", LocalExecutor), ("ray", RayExecutor)):
        executor = instantiate("executor", compose([f"executor={name}"]).executor)
        assert isinstance(executor, kind) and executor.name == name and executor.n_workers >= 1
    setup, supernet = setup_and_supernet("n_trials=3")
    polls = []
    statuses = LocalExecutor(n_workers=1).run(setup, supernet, lambda: polls.append(1), print, None)
    assert statuses == [DONE] and len(polls) == 3


def test_a_trial_finished_elsewhere_while_it_scores_does_not_stop_the_worker(tmp_path):
    """Another worker failed this trial as stale (its heartbeat missed on a loaded machine) while
    it was still being scored: telling its result is refused, and the worker goes on."""
    from nas.search.worker import run_one_trial

    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", directions=["maximize"])

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # what fail_stale_trials does
        return x

    assert run_one_trial(study, objective) is None
    assert [t.state for t in study.trials] == [TrialState.FAIL]  # one record of it, kept
    finished = run_one_trial(study, lambda trial: trial.suggest_float("x", 0, 1))
    assert finished.state == TrialState.COMPLETE and len(study.trials) == 2

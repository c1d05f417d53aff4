"""``nas run``, the whole path in one command, on the tiny space: search, the distinct front and a
baseline trained with one recipe, every model measured alike at the end, the report; killed in
its training phase and run again, it finishes and trains nothing twice. And retraining a front
that holds one architecture several times trains it once."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from nas.records import FINAL_LATENCY_ATTR, RUN_PHASES_ATTR, FinalLatencies, RunRecord
from tests.conftest import REPO, TINY_SEARCH, run_in_process

RUN = [*TINY_SEARCH, "n_trials=8", "retrain.epochs=1", "retrain.warmup_epochs=0", "run.final_attempts=2"]
ONE_BASELINE = ["~baselines.models", "+baselines.models={mobilenetv3_small_050: {}}"]


def _study(folder):
    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{folder}/nas.db")
    return optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{folder}/nas.db")


def _distinct_front(study):
    return {t.user_attrs["arch_key"] for t in study.best_trials}


@pytest.mark.slow
def test_the_whole_path_in_one_command(tmp_path):
    code, out, err = run_in_process("run", *RUN, *ONE_BASELINE, cwd=tmp_path)
    assert code == 0, out + err
    study = _study(tmp_path)
    records = RunRecord.all_in(study.user_attrs)
    found = [r for r in records.values() if r.trial is not None]
    (baseline,) = [r for r in records.values() if r.trial is None]
    assert baseline.name == "mobilenetv3_small_050"
    assert len(found) == len(_distinct_front(study))  # each front architecture once
    assert not any(r.stopped for r in records.values())  # nothing cut short
    final = FinalLatencies.of(study.user_attrs)
    assert set(final.figures) == {FinalLatencies.trial_key(r.trial) for r in found} | {
        FinalLatencies.baseline_key("mobilenetv3_small_050")
    }
    assert all(f["median"] > 0 and "quiet" in f and "steady" in f for f in final.figures.values())
    assert final.profiler["name"] == "onnxruntime" and final.hardware
    (phases,) = study.user_attrs[RUN_PHASES_ATTR]
    assert list(phases["phases"]) == ["search", "training", "measurement", "report"]
    assert all(seconds >= 0 for seconds in phases["phases"].values())
    page = (tmp_path / "report" / f"{study.study_name}.html").read_text()
    assert "mobilenetv3_small_050" in page and "fastest found of at least its top-1" in page
    assert "one final pass" in page
    for phase in ("search", "training", "measurement", "report"):
        assert f"nas run: {phase} done in" in " ".join(out.split())

    # The same command again: every phase finds its work done.
    code, out, err = run_in_process("run", *RUN, *ONE_BASELINE, cwd=tmp_path)
    assert code == 0, out + err
    assert "cached" in out and RunRecord.all_in(_study(tmp_path).user_attrs).keys() == records.keys()
    assert FinalLatencies.of(_study(tmp_path).user_attrs).figures == final.figures  # not measured again


@pytest.mark.slow
def test_a_run_killed_while_it_trains_finishes_when_run_again(tmp_path):
    status = tmp_path / "status.json"
    env = os.environ | {"PYTHONPATH": str(REPO), "NAS_STATUS_FILE": str(status)}
    args = [*RUN, "run.baselines=false", "retrain.epochs=3", "checkpoint_every_s=0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas", "run", *args], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline:
        phase = json.loads(status.read_text()).get("phase") if status.exists() else None
        if phase == "training" and list((tmp_path / ".nas_cache" / "retrain").rglob("checkpoint.pt")):
            break
        assert proc.poll() is None, "nas run ended before it was killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its training processes
    proc.wait()
    assert FINAL_LATENCY_ATTR not in _study(tmp_path).user_attrs  # it was killed before the end
    code, out, err = run_in_process("run", *args, cwd=tmp_path)
    assert code == 0, out + err
    study = _study(tmp_path)
    found = RunRecord.all_in(study.user_attrs).values()
    assert len(found) == len(_distinct_front(study)) and all(r.epochs == 3 for r in found)
    assert len(FinalLatencies.of(study.user_attrs).figures) == len(found)


@pytest.mark.slow
def test_a_front_with_repeated_architectures_trains_each_once(tiny_study, tmp_path):
    import shutil

    folder = tmp_path / "study"
    shutil.copytree(tiny_study, folder)
    study = _study(folder)
    repeated = study.best_trials[0]
    for _ in range(2):  # the sampler found that architecture twice more
        study.add_trial(
            optuna.trial.create_trial(
                params=repeated.params,
                distributions=repeated.distributions,
                values=repeated.values,
                user_attrs=repeated.user_attrs,
            )
        )
    front = _study(folder).best_trials
    assert len(front) == len(_distinct_front(_study(folder))) + 2
    code, out, err = run_in_process(
        "train", "front=true", "retrain.epochs=1", "retrain.warmup_epochs=0", "progress=false", cwd=folder
    )
    assert code == 0, out + err
    assert f"{len(front)} trials, {len(front) - 2} distinct architectures" in " ".join(out.split())
    records = RunRecord.all_in(_study(folder).user_attrs).values()
    assert len(records) == len(front) - 2
    (record,) = [r for r in records if repeated.number in r.stands_for()]
    assert sorted(record.stands_for()) == sorted(t.number for t in front if t.params == repeated.params)


def test_process_trainer_trains_candidates_at_once(tiny_study, tmp_path):
    """Two candidates in two processes of their own: both trained, their runs overlap, and each
    result is what the same candidate gives trained alone in this process."""
    import shutil

    from rich.console import Console

    from nas.config import compose, instantiate
    from nas.supernet_training import channel_stats
    from nas.training.candidates import StudyTrial, scratch_model
    from nas.training.loop import Retrained
    from nas.training.trainers import LocalTrainer, ProcessTrainer, TrainJobs

    folder = tmp_path / "study"
    shutil.copytree(tiny_study, folder)
    cfg = compose(["retrain.epochs=1", "retrain.warmup_epochs=0"])
    data = instantiate("dataset", cfg.dataset).load()
    train_idx, val_idx = data.split(val_fraction=0.1, seed=0)
    mean, std = channel_stats(data, train_idx)
    from nas.augment import auto_augmentation, resolve_augmentation

    recipe = resolve_augmentation(instantiate("retrain", cfg.retrain), auto_augmentation(data))
    from nas.study import trial_arch

    study = _study(folder)
    candidates = [
        StudyTrial(str(t.number), __import__("functools").partial(scratch_model, trial_arch(t), 0, mean, std))
        for t in study.trials[:2]
    ]

    def jobs(cache):
        return TrainJobs(candidates, data, train_idx, val_idx, recipe, "scratch", "cpu", 30.0, cache, False)

    together = ProcessTrainer(concurrent=2).run(jobs(folder / "a"), Console(quiet=True))
    alone = LocalTrainer().run(jobs(folder / "b"), Console(quiet=True))
    assert set(together) == {c.name for c in candidates} and all(
        isinstance(r, Retrained) for r in together.values()
    )
    spans = sorted((r.started_at, r.finished_at) for r in together.values())
    assert spans[1][0] < spans[0][1], f"the trainings did not overlap: {spans}"
    for name, result in together.items():
        assert abs(result.val_top1 - alone[name].val_top1) <= 1.0  # same seeds; threads may reorder sums


def test_the_costliest_training_starts_first():
    """Trainings sharing a device start longest first (FLOPs of a forward pass), so the long
    ones do not start last and finish alone."""
    import torch
    from torch import nn

    from nas.config import compose, instantiate
    from nas.training.candidates import Candidate
    from nas.training.trainers import TrainJobs

    data = instantiate("dataset", compose([]).dataset).load()
    recipe = instantiate("retrain", compose([]).retrain)

    def conv(width: int):
        return lambda: nn.Sequential(nn.Conv2d(data.in_channels, width, 3), nn.Flatten(), nn.LazyLinear(10))

    candidates = [Candidate(name, conv(w)) for name, w in (("narrow", 2), ("wide", 64), ("mid", 8))]
    jobs = TrainJobs(
        candidates, data, torch.arange(8), torch.arange(8), recipe, "scratch", "cpu", 30.0, None, False
    )
    assert [candidates[i].name for i in jobs.longest_first()] == ["wide", "mid", "narrow"]

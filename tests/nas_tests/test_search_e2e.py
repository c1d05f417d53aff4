"""End to end on the tiny space: search, resume/top-up, export, the study's records."""

import json

import numpy as np
import onnxruntime as ort
import optuna
import pytest
import yaml

from tests.conftest import nas_in_process

FAST = ["+space=tiny", "supernet.epochs=2", "profiler.runs=10", "profiler.warmup=2"]


@pytest.mark.slow
def test_search_resume_top_up_and_export(tmp_path):
    first = nas_in_process("search", *FAST, "n_trials=8", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Supernet trained" in first.stdout and "Pareto front" in first.stdout
    assert (tmp_path / "tiny-fashion_mnist_6k_pareto.csv").exists()
    assert (tmp_path / "tiny-fashion_mnist_6k_pareto.png").stat().st_size > 1000
    checkpoint = next((tmp_path / ".nas_cache" / "supernets").glob("*/supernet.pt"))
    trained_at = checkpoint.stat().st_mtime_ns

    study = optuna.load_study(study_name="tiny-fashion_mnist_6k", storage=f"sqlite:///{tmp_path}/nas.db")
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 8
    t = trials[0]
    assert {"arch", "arch_key", "params", "flops", "macs", "latency", "profiler", "hardware"} <= set(
        t.user_attrs
    )
    assert t.user_attrs["latency"]["unit"] == "ms" and t.user_attrs["latency"]["median"] == t.values[1]
    assert t.user_attrs["hardware"]["cpu_count"] >= 1 and t.user_attrs["profiler"]["name"] == "onnxruntime"
    assert 0 <= t.values[0] <= 100 and t.user_attrs["top1"] == t.values[0]
    assert study.user_attrs["nas"]["supernet"]["largest_top1"] > 10  # learned something

    again = nas_in_process("search", *FAST, "n_trials=8", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "is complete" in again.stdout
    assert len(study.get_trials()) == 8  # no new trial, not even a failed one

    more = nas_in_process("search", *FAST, "n_trials=11", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert "Supernet reused" in more.stdout
    assert checkpoint.stat().st_mtime_ns == trained_at  # not retrained
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 11 and len(study.get_trials()) == 11

    # A changed recipe would make figures incomparable: refused, nothing written.
    changed = nas_in_process("search", "+space=tiny", "supernet.epochs=3", "n_trials=12", cwd=tmp_path)
    assert changed.returncode == 2 and "supernet_key" in changed.stderr
    assert len(study.get_trials()) == 11

    fastest = min(complete, key=lambda t: t.values[1])
    budget = sorted(t.values[1] for t in complete)[len(complete) // 2]
    exported = nas_in_process("export", f"latency_budget_ms={budget}", "out_dir=out", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "max abs diff" in exported.stdout
    within = [t for t in complete if t.values[1] <= budget]
    best = max(within, key=lambda t: (t.values[0], -t.values[1]))  # equal top-1: the faster one
    arch = yaml.safe_load((tmp_path / "out" / "arch.yaml").read_text())
    assert arch == best.user_attrs["arch"]
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    assert session.get_inputs()[0].name == "images"

    by_number = nas_in_process("export", f"trial={fastest.number}", cwd=tmp_path)
    assert by_number.returncode == 0, by_number.stderr
    assert (tmp_path / "export" / f"tiny-fashion_mnist_6k-trial{fastest.number}" / "model.onnx").exists()

    too_tight = nas_in_process("export", f"latency_budget_ms={fastest.values[1] / 10}", cwd=tmp_path)
    assert too_tight.returncode == 2
    assert f"fastest is trial {fastest.number}" in too_tight.stderr

    csv_rows = (tmp_path / "tiny-fashion_mnist_6k_pareto.csv").read_text().splitlines()
    assert len(csv_rows) - 1 == len(study.best_trials)
    json.loads(json.dumps(study.user_attrs["nas"]))  # plain JSON in the database


ONE_MEMBER_SPACE = """\
_target_: search_spaces.vit.VitSpace
name: single
patch_size: [14]
embed_dim: [8]
depth: [1, 1]
head_dim: 4
num_heads: [1]
mlp_ratio: [1]
attention: [linear]
activation: [relu]
"""


def test_user_space_from_config_dir_and_repeated_architectures_are_not_re_evaluated(tmp_path):
    (tmp_path / "myconf" / "space").mkdir(parents=True)
    (tmp_path / "myconf" / "space" / "single.yaml").write_text(ONE_MEMBER_SPACE)
    result = nas_in_process(
        "search",
        "+space=single",
        "--config-dir",
        "myconf",
        "n_trials=3",
        "supernet.epochs=1",
        "profiler.runs=5",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="single-fashion_mnist_6k", storage=f"sqlite:///{tmp_path}/nas.db")
    first, *rest = study.get_trials()
    assert len(rest) == 2 and "reused_from" not in first.user_attrs
    for t in rest:  # the only member, suggested again: figures reused, not measured again
        assert t.user_attrs["reused_from"] == first.number and t.values == first.values


BROKEN_PROFILER = """\
class Broken:
    name, unit, measured = "broken", "ms", False

    def settings(self):
        return {}

    def measure(self, arch, model=None):
        raise RuntimeError("device lost")
"""


def test_a_search_where_every_trial_fails_stops_with_a_message(tmp_path):
    (tmp_path / "broken_profiler.py").write_text(BROKEN_PROFILER)
    (tmp_path / "myconf" / "profiler").mkdir(parents=True)
    (tmp_path / "myconf" / "profiler" / "broken.yaml").write_text("_target_: broken_profiler.Broken\n")
    result = nas_in_process(
        "search",
        "+space=tiny",
        "supernet.epochs=1",
        "max_consecutive_failures=3",
        "profiler=broken",
        "--config-dir",
        "myconf",
        cwd=tmp_path,
        extra_path=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert "3 trials in a row failed" in result.stderr
    study = optuna.load_study(study_name="tiny-fashion_mnist_6k", storage=f"sqlite:///{tmp_path}/nas.db")
    assert [t.state for t in study.get_trials()] == [optuna.trial.TrialState.FAIL] * 3
    assert study.trials[0].user_attrs["fail_reason"] == "RuntimeError: device lost"
    assert "arch" in study.trials[0].user_attrs


FLAKY_PROFILER = """\
import torch
from latency_models._base import LatencyResult

class Flaky:
    name, unit, measured = "flaky", "ms", False
    calls = 0

    def settings(self):
        return {}

    def measure(self, arch, model=None):
        Flaky.calls += 1
        if Flaky.calls == 1:
            return LatencyResult.from_samples([float("nan")])
        if Flaky.calls == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if Flaky.calls == 3:
            raise RuntimeError("ONNX export failed: unsupported operator")
        return LatencyResult.from_samples([0.1 * arch.embed_dim])
"""


def test_nan_out_of_memory_and_export_failures_are_recorded_and_the_search_goes_on(tmp_path):
    (tmp_path / "flaky_profiler.py").write_text(FLAKY_PROFILER)
    (tmp_path / "myconf" / "profiler").mkdir(parents=True)
    (tmp_path / "myconf" / "profiler" / "flaky.yaml").write_text("_target_: flaky_profiler.Flaky\n")
    args = [
        "search",
        "+space=tiny",
        "supernet.epochs=1",
        "n_trials=5",
        "profiler=flaky",
        "--config-dir",
        "myconf",
    ]
    result = nas_in_process(*args, cwd=tmp_path, extra_path=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="tiny-fashion_mnist_6k", storage=f"sqlite:///{tmp_path}/nas.db")
    states = [t.state for t in study.get_trials()]
    TrialState = optuna.trial.TrialState
    assert states[:3] == [TrialState.FAIL] * 3 and states.count(TrialState.COMPLETE) == 5
    reasons = [t.user_attrs["fail_reason"] for t in study.trials[:3]]
    assert reasons[0] == "ValueError: NaN score or latency"
    assert reasons[1].startswith("OutOfMemoryError: CUDA out of memory")
    assert reasons[2] == "RuntimeError: ONNX export failed: unsupported operator"
    assert all("arch" in t.user_attrs for t in study.trials[:3])
    for number, reason in enumerate(reasons):  # the search said so as it went
        assert f"trial {number} failed" in result.stdout


SPARSE_TINY = """\
_target_: search_spaces.vit.VitSpace
name: sparse_tiny
patch_size: [7]
embed_dim: [16, 24]
depth: [1, 2]
head_dim: 8
num_heads: [1, 2]
mlp_ratio: [2]
attention: [linear, softmax, pool]
activation: [relu]
mlp_pattern: [dense, "2:4", unstructured, structured]
mlp_sparsity: [0.5, 0.75]
"""


def test_sparsity_aware_three_objective_search(tmp_path):
    (tmp_path / "conf" / "space").mkdir(parents=True)
    (tmp_path / "conf" / "space" / "sparse_tiny.yaml").write_text(SPARSE_TINY)
    result = nas_in_process(
        "search",
        "+space=sparse_tiny",
        "--config-dir",
        "conf",
        "n_trials=12",
        "supernet.epochs=1",
        "objectives=[accuracy,latency,nonzero_params]",
        "profiler.runs=5",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(
        study_name="sparse_tiny-fashion_mnist_6k", storage=f"sqlite:///{tmp_path}/nas.db"
    )
    assert len(study.directions) == 3
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 12
    for t in trials:
        assert t.values[2] == t.user_attrs["nonzero_params"] <= t.user_attrs["params"]
        assert 0.2 < t.user_attrs["activation_sparsity"] < 1  # ReLU: measured share of zeros
        layers = t.user_attrs["arch"]["layers"]
        if any(layer["mlp_pattern"] in ("2:4", "unstructured") for layer in layers):
            assert t.user_attrs["nonzero_params"] < t.user_attrs["params"]
    assert (tmp_path / "sparse_tiny-fashion_mnist_6k_pareto.png").exists()


def test_hybrid_space_searches_resumes_and_exports(tmp_path):
    # The largest and smallest member per step only (num_random=0): half the training, the space's
    # shape unchanged.
    args = ["+space=hybrid", "supernet.epochs=1", "supernet.num_random=0", "n_trials=6"]
    args += ["profiler.runs=5", "profiler.warmup=2"]
    result = nas_in_process("search", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="hybrid-fashion_mnist_6k", storage=f"sqlite:///{tmp_path}/nas.db")
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 6
    for t in trials:
        stages = t.user_attrs["arch"]["stages"]
        assert len(stages) == 3 and stages[0]["attention_blocks"] == []  # 14x14: conv only
        assert 1 <= len(stages[2]["attention_blocks"]) <= 2
        assert 0 <= t.user_attrs["activation_sparsity"] < 1 and t.user_attrs["params"] > 0
    assert "is complete" in nas_in_process("search", *args, cwd=tmp_path).stdout

    best = max(trials, key=lambda t: t.values[0])
    exported = nas_in_process("export", *args, f"trial={best.number}", "out_dir=out", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "onnx.checker passed" in exported.stdout
    assert yaml.safe_load((tmp_path / "out" / "arch.yaml").read_text()) == best.user_attrs["arch"]
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    (logits,) = session.run(None, {"images": np.random.rand(2, 1, 28, 28).astype("float32")})
    assert logits.shape == (2, 10)

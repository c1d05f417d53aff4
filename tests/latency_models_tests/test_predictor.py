"""The learned predictor: blocks, the lookup table, fit/eval through the CLI, a predictor-driven
search that checks itself against measurements."""

import csv
import json
import random

import optuna
import pytest
import torch

from latency_models import create_profiler
from latency_models.blocks import decompose
from latency_models.predictor import Predictor, PredictorProfiler, space_blocks
from search_spaces.networks import build_model
from tests.conftest import nas_in_process as run_nas


def _space(name):
    """A shipped space at the embedded data's size (28x28 gray, 10 classes)."""
    from nas.config import compose, instantiate

    return instantiate(
        "space", compose([f"+space={name}"]).space, image_size=28, in_channels=1, num_classes=10
    )


@pytest.mark.parametrize("fixture", ["vit_space", "hybrid_space"])
def test_blocks_build_and_chain_into_the_network(fixture, request):
    """Each block runs on its input shape, and the blocks run in order compute a tensor of the
    network's output shape from its input (the decomposition is the whole network)."""
    space = request.getfixturevalue(fixture)
    rng = random.Random(0)
    for arch in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(5)]:
        x = torch.rand(2, *arch.input_shape)
        blocks = decompose(arch)
        with torch.no_grad():
            for block in blocks:
                if tuple(x.shape[1:]) != block.input_shape:  # tokens <-> feature map (hybrid)
                    x = (
                        x.transpose(1, 2).reshape(2, *block.input_shape)
                        if x.dim() == 3
                        else (x.flatten(2).transpose(1, 2))
                    )
                assert tuple(x.shape[1:]) == block.input_shape, block.key()
                x = block.build()(x)
        assert x.shape == build_model(arch)(torch.rand(2, *arch.input_shape)).shape


def test_block_keys_ignore_what_does_not_change_latency(vit_space):
    import dataclasses

    arch = vit_space.largest()
    layer = arch.layers[0]
    dense = dataclasses.replace(
        arch, layers=(dataclasses.replace(layer, mlp_pattern="dense", mlp_sparsity=0.0),)
    )
    unstructured = dataclasses.replace(
        arch, layers=(dataclasses.replace(layer, mlp_pattern="unstructured", mlp_sparsity=0.5),)
    )
    n_m = dataclasses.replace(arch, layers=(dataclasses.replace(layer, mlp_pattern="2:4", mlp_sparsity=0.5),))
    structured = dataclasses.replace(
        arch, layers=(dataclasses.replace(layer, mlp_pattern="structured", mlp_sparsity=0.5),)
    )
    keys = [[b.key() for b in decompose(a)] for a in (dense, unstructured, n_m, structured)]
    assert keys[0] == keys[1]  # zeros kept in dense weights run as dense
    assert keys[0] != keys[2] and keys[0] != keys[3]  # N:M may have kernels; structured is smaller


@pytest.mark.parametrize("name", ["vit", "hybrid"])
def test_space_blocks_cover_fresh_members_of_the_shipped_spaces(name):
    space = _space(name)
    known = {b.key() for b in space_blocks(space, seed=0)}
    rng = random.Random(12345)
    fresh = {b.key() for _ in range(500) for b in decompose(space.sample(rng))}
    assert fresh <= known
    assert 50 < len(known) < 2000  # a lookup table, not one entry per member


def _read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_fit_eval_and_a_predictor_search(tmp_path):
    # Batch 64: compute, not per-call overhead, decides (at batch 1 both ends take ~0.13 ms).
    fast = ["+space=tiny", "profiler.runs=20", "profiler.warmup=3", "profiler.batch_size=64"]
    fit = run_nas("latency", "fit", *fast, "n_samples=12", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    (path,) = (tmp_path / ".nas_cache" / "predictors").glob("tiny-onnxruntime-*.json")
    predictor = Predictor.load(path)
    assert len(predictor.samples) == 12 and len(predictor.weights) == 5
    assert predictor.profiler["settings"]["runs"] == 20 and predictor.hardware["cpu_count"] >= 1
    tiny = _space("tiny")
    assert {b.key() for b in space_blocks(tiny, seed=0)} <= set(predictor.table)
    # 100x the FLOPs: predicted slower, whatever the machine.
    assert predictor.predict(tiny.largest()) > predictor.predict(tiny.smallest()) > 0

    # Fitting again measures nothing: every sample and block is in the latency table.
    again = run_nas("latency", "fit", *fast, "n_samples=12", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "(0 measurements," in " ".join(again.stdout.split())

    evaluated = run_nas("latency", "eval", "+space=tiny", "n_samples=10", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    rows = _read_csv(path.with_name(path.stem + "_eval.csv"))
    assert len(rows) == 10
    fitted = {json.dumps(a, sort_keys=True) for a, _ in predictor.samples}
    from search_spaces.arch import arch_from_dict

    fitted_keys = {arch_from_dict(json.loads(a)).key() for a in fitted}
    assert not {r["arch_key"] for r in rows} & fitted_keys  # held out
    within = sum(abs(float(r["error"])) <= 0.1 for r in rows) / len(rows)
    assert f"{within:.1%}" in evaluated.stdout and "MAPE" in evaluated.stdout and "RMSE" in evaluated.stdout
    for r in rows:
        ratio = float(r["predicted_ms"]) / float(r["measured_ms"])
        assert ratio - 1 == pytest.approx(float(r["error"]), abs=1e-4)
    assert path.with_name(path.stem + "_eval.png").stat().st_size > 1000

    # A search on the predictor: half the trials also measured, both figures recorded.
    search = run_nas(
        "search",
        "+space=tiny",
        "supernet.epochs=1",
        "n_trials=8",
        "profiler=predictor",
        "profiler.measure_fraction=0.5",
        cwd=tmp_path,
    )
    assert search.returncode == 0, search.stderr
    assert "predicted vs measured" in search.stdout
    study = optuna.load_study(study_name="tiny-fashion_mnist_6k", storage=f"sqlite:///{tmp_path}/nas.db")
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 8
    checked = [t for t in trials if "latency_measured" in t.user_attrs]
    assert checked and len(checked) < 8
    for t in checked:
        measured, predicted = t.user_attrs["latency_measured"]["median"], t.values[1]
        assert t.user_attrs["latency_error"] == pytest.approx(predicted / measured - 1, abs=1e-4)
    assert {t.user_attrs["profiler"]["name"] for t in trials} == {"predictor"}
    front = study.user_attrs["front_check"]
    assert {n for c in front for n in c["trials"]} == {t.number for t in study.best_trials}
    assert all(abs(c["predicted"] / c["measured"] - 1 - c["error"]) < 1e-9 for c in front)

    # nas profile finds the space's predictor by the trial's architecture.
    profiled = run_nas("profile", f"trial={trials[0].number}", "profiler=predictor", cwd=tmp_path)
    assert profiled.returncode == 0, profiled.stderr
    assert "predictor latency of" in profiled.stdout and "median" in profiled.stdout


def test_predictor_profiler_fills_missing_blocks_and_recalibrates(tmp_path, tiny_space):
    measuring = create_profiler("onnxruntime", runs=10, warmup=2)
    described = {"name": measuring.name, "unit": measuring.unit, "settings": measuring.settings()}
    from latency_models.hardware import fingerprint, fingerprint_id
    from latency_models.predictor import fit_samples

    predictor = Predictor(described, fingerprint(), fingerprint_id(), space="tiny")
    rng = random.Random(3)
    fit_samples(predictor, measuring, [tiny_space.sample(rng) for _ in range(6)])
    predictor.calibrate()
    path = predictor.save(tmp_path / "p.json")
    dump = lambda p: json.dumps(p.to_dict(), sort_keys=True)  # noqa: E731
    assert dump(Predictor.load(path)) == dump(predictor)

    profiler = PredictorProfiler(str(path), measure_fraction=1.0)
    unseen = next(a for a in (tiny_space.sample(rng) for _ in range(200)) if profiler.predictor.missing(a))
    result = profiler.measure(unseen)  # measures the blocks it lacks, once
    assert not profiler.predictor.missing(unseen) and result.median > 0 and result.n_runs == 0
    assert profiler.wants_measurement(unseen)  # fraction 1: every architecture is checked
    before = list(profiler.predictor.weights)
    profiler.add_measurement(unseen, result.median * 2)
    assert profiler.predictor.weights != before and len(profiler.predictor.samples) == 7
    assert not PredictorProfiler(str(path), measure_fraction=0.0).wants_measurement(unseen)


def test_predictor_errors_are_one_line(tmp_path):
    none = run_nas("search", "+space=tiny", "profiler=predictor", cwd=tmp_path)
    assert none.returncode == 2 and "nas latency fit +space=tiny" in none.stderr
    assert len(none.stderr.strip().splitlines()) == 1 and not (tmp_path / "nas.db").exists()
    proxy = run_nas("latency", "fit", "+space=tiny", "profiler=flops", cwd=tmp_path)
    assert proxy.returncode == 2 and "does not measure time" in proxy.stderr
    bad = run_nas("latency", "fit", "+space=tiny", "n_samples=1", cwd=tmp_path)
    assert bad.returncode == 2 and "n_samples" in bad.stderr
    missing = run_nas("latency", "eval", "+space=tiny", "predictor=nope.json", cwd=tmp_path)
    assert missing.returncode == 2 and "nope.json" in missing.stderr
    foreign = tmp_path / "foreign.json"
    data = {
        "format_version": 1,
        "features": ["intercept", "ends", "mixer", "mlp", "conv"],
        "weights": [],
        "table": {},
        "samples": [],
        "profiler": {},
        "hardware": {"cpu": "elsewhere"},
        "hardware_id": "000000000000",
    }
    foreign.write_text(json.dumps(data))
    other = run_nas("latency", "eval", "+space=tiny", f"predictor={foreign}", cwd=tmp_path)
    assert other.returncode == 2 and "other hardware" in other.stderr
    usage = run_nas("latency", "fitt", cwd=tmp_path)
    assert usage.returncode == 2 and "fit, eval" in usage.stderr

"""``nas train``: a study's trial, an exported arch.yaml and a timm model trained on their own
with timm's utilities (real study, real data, real timm); results recorded with the study; a
killed run resumes and ends where an uninterrupted one ends; found models through
timm.create_model match their exported ONNX."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
import torch

from tests.conftest import REPO, run_in_process

QUICK = ["retrain.epochs=1", "retrain.warmup_epochs=0", "retrain.batch_size=256", "progress=false"]


@pytest.fixture
def study_copy(tiny_study, tmp_path):
    """A writable copy of the session's tiny study (its supernet path points into the original
    cache, which these tests only read)."""
    folder = tmp_path / "study"
    shutil.copytree(tiny_study, folder)
    return folder


def _records(folder, prefix, study=None):
    study = optuna.load_study(study_name=study, storage=f"sqlite:///{folder}/nas.db")
    return {k: v for k, v in study.user_attrs.items() if k.startswith(prefix)}


def test_train_a_trial_from_scratch_and_inherited_an_arch_yaml_and_a_timm_model(study_copy):
    code, out, err = run_in_process("train", "trial=0", *QUICK, cwd=study_copy)
    assert code == 0, out + err
    code, out_inherit, err = run_in_process("train", "trial=0", "init=inherit", *QUICK, cwd=study_copy)
    assert code == 0, out_inherit + err
    records = _records(study_copy, "retrained:0:")
    assert {r["init"] for r in records.values()} == {"scratch", "inherit"}
    for record in records.values():
        assert record["epochs"] == 1 and 0 <= record["val_top1"] <= 100 and record["params"] > 0
        assert record["recipe"]["opt"] == "adamw" and record["kind"] == "trial"
    assert "trial 0" in out and "inherited" in out  # the table shows the inherited figure beside

    code, out, err = run_in_process("export", "trial=0", "out_dir=exported", cwd=study_copy)
    assert code == 0, out + err
    code, out, err = run_in_process("train", "arch=exported/arch.yaml", *QUICK, cwd=study_copy)
    assert code == 0, out + err
    assert len(_records(study_copy, "retrained:arch-")) == 1

    code, out, err = run_in_process(
        "train", "timm=test_vit", "timm_kwargs={patch_size: 4}", *QUICK, cwd=study_copy
    )
    assert code == 0, out + err
    (baseline,) = _records(study_copy, "baseline:test_vit:").values()
    assert baseline["kind"] == "baseline" and baseline["epochs"] == 1
    # The same command again finds the finished result instead of training again.
    code, out, err = run_in_process(
        "train", "timm=test_vit", "timm_kwargs={patch_size: 4}", *QUICK, cwd=study_copy
    )
    assert code == 0 and "cached" in out, out + err


def test_channels_last_trains_a_conv_model_and_keeps_the_recipe_key(study_copy):
    """retrain.channels_last changes how a training runs, not what it trains: the key, and so the
    result a user trained without it, stay the same."""
    from nas.training.recipe import RetrainRecipe

    # The key of the H200 study's records (BENCHMARKS.md, section 4): fields added
    # to the recipe since must not change it.
    assert RetrainRecipe(batch_size=512, lr=0.003).key() == "5a0af21f5d"
    assert RetrainRecipe(channels_last=True).key() == RetrainRecipe().key()
    assert RetrainRecipe(cuda_graphs=False).key() == RetrainRecipe().key()
    args = ["timm=mobilenetv3_small_050", *QUICK]
    code, out, err = run_in_process("train", *args, "retrain.channels_last=true", cwd=study_copy)
    assert code == 0, out + err
    (baseline,) = _records(study_copy, "baseline:mobilenetv3_small_050:").values()
    assert baseline["epochs"] == 1 and baseline["recipe"]["channels_last"] is True
    assert 0 <= baseline["val_top1"] <= 100
    code, out, err = run_in_process("train", *args, cwd=study_copy)
    assert code == 0 and "cached" in out, out + err


def test_without_progress_bars_a_training_logs_its_pace(study_copy):
    """progress=false (a log file, a service job): plain lines, one per tenth of the training,
    each with its step and pace, so a slow run is visible before it ends."""
    args = ["retrain.epochs=2", "retrain.warmup_epochs=0", "retrain.batch_size=32", "progress=false"]
    code, out, err = run_in_process("train", "trial=0", *args, cwd=study_copy)
    assert code == 0, out + err
    lines = [line for line in out.splitlines() if line.startswith("train 0: step ")]
    assert len(lines) >= 5, out
    assert all("steps/s" in line and "loss" in line for line in lines)
    steps = [int(line.split("step ")[1].split("/")[0]) for line in lines]
    assert steps == sorted(steps) and steps[-1] == int(lines[-1].split("/")[1].split()[0])


def test_inherit_starts_from_the_supernet_weights(study_copy):
    """init=inherit trains the very model the search scored: before any step its top-1 on the
    validation split is the trial's recorded (inherited) top-1."""
    from nas.config import compose, instantiate
    from nas.export import inherited_model
    from nas.records import STUDY_ATTR
    from nas.study import top1
    from nas.supernet_training import evaluate

    study = optuna.load_study(study_name=None, storage=f"sqlite:///{study_copy}/nas.db")
    trial = study.trials[0]
    model = inherited_model(study.user_attrs[STUDY_ATTR], study.study_name, trial)
    cfg = compose([])
    dataset = instantiate("dataset", cfg.dataset)
    data = dataset.load()
    _, val_idx = data.split(val_fraction=dataset.val_fraction, seed=cfg.seed)
    val = data.subset(val_idx)
    assert evaluate(model, None, val.images, val.labels) == pytest.approx(top1(trial), abs=1e-6)


@pytest.mark.parametrize(
    "args, words",
    [
        (["trial=0", "timm=resnet18"], ["exactly one", "trial", "timm"]),
        ([], ["exactly one", "none"]),
        (["timm=resnet18", "init=inherit"], ["init", "inherit"]),
        (["timm=no_such_model_xyz"], ["timm", "no_such_model_xyz"]),
        (["arch=missing.yaml"], ["arch", "missing.yaml"]),
        (["trial=0", "retrain.lr=-1"], ["retrain.lr"]),
        (["trial=0", "retrain.opt=nonsense"], ["retrain.opt", "nonsense"]),
        (["trial=0", "init=partly"], ["init"]),
        (["trial=99"], ["trial", "99"]),
        (["trials=[0,99]"], ["trial", "99"]),
        (["trials=[]"], ["trials"]),
        (["trials=[0]", "front=true"], ["exactly one", "trials", "front"]),
    ],
)
def test_bad_train_input_is_one_line_and_exit_2(study_copy, args, words):
    before = sorted(p.name for p in study_copy.iterdir())
    code, out, err = run_in_process("train", *args, *QUICK, cwd=study_copy)
    assert code == 2, out + err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert all(w in err for w in words), err
    assert sorted(p.name for p in study_copy.iterdir()) == before


@pytest.mark.slow
def test_a_killed_training_resumes_and_ends_as_an_uninterrupted_one(study_copy, tmp_path):
    code, out, err = run_in_process("export", "trial=0", "out_dir=exported", cwd=study_copy)
    assert code == 0, out + err
    args = [
        "train",
        "arch=exported/arch.yaml",
        "retrain.epochs=4",
        "retrain.warmup_epochs=1",
        "progress=false",
    ]
    # The environment of this process, where the other two runs go, and as many torch threads
    # as they use: the same float summation order.
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(torch.get_num_threads())}

    def nas(cache, *extra):
        return [*args, f"cache_dir={cache}", *extra]

    # Uninterrupted, in its own cache (no study: storage points nowhere), in this process.
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copytree(study_copy / "exported", alone / "exported")
    code, out, err = run_in_process(*nas(alone / "c", "storage=sqlite:///none.db"), cwd=alone)
    assert code == 0, out + err

    killed = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nas",
            *nas(study_copy / "c", "checkpoint_every_s=0", "storage=sqlite:///none.db"),
        ],
        cwd=study_copy,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    checkpoints = []
    while time.time() < deadline and not checkpoints and killed.poll() is None:
        checkpoints = list((study_copy / "c" / "retrain").glob("*/checkpoint.pt"))
        time.sleep(0.05)
    assert checkpoints, "no checkpoint was written"
    killed.send_signal(signal.SIGKILL)  # at once: on a quiet machine the 4 epochs take about a second
    killed.wait()
    assert not list((study_copy / "c" / "retrain").glob("*/result.json")), "it finished before the kill"
    # The same command again, in this process.
    code, out, err = run_in_process(*nas(study_copy / "c", "storage=sqlite:///none.db"), cwd=study_copy)
    assert code == 0, out + err

    (a,) = (alone / "c" / "retrain").glob("*/result.json")
    (b,) = (study_copy / "c" / "retrain").glob("*/result.json")
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert rb["resumed"] and not ra["resumed"]
    assert ra["val_top1"] == rb["val_top1"] and ra["epochs"] == rb["epochs"] == 4
    wa = torch.load(a.parent / "model.pt", weights_only=True)
    wb = torch.load(b.parent / "model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_found_model_through_timm_create_model_matches_its_onnx(study_copy):
    import onnxruntime as ort
    import timm

    from nas.timm_models import register_export

    code, out, err = run_in_process("export", "trial=0", "out_dir=exported", cwd=study_copy)
    assert code == 0, out + err
    name = register_export(study_copy / "exported")
    assert name.startswith("nas_") and name in timm.list_models("nas_*")
    model = timm.create_model(name, pretrained=True)
    assert model.pretrained_cfg["input_size"][0] == 1 and model.pretrained_cfg["std"] == (1.0,)
    images = torch.rand(4, *model.pretrained_cfg["input_size"], generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(
        str(study_copy / "exported" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (expected,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        got = model(images).numpy()
    assert np.abs(got - expected).max() < 1e-4

    other = timm.create_model(name, pretrained=True, num_classes=3)  # a new head, the same trunk
    assert other.head.out_features == 3
    trunk = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in trunk.items())
    with pytest.raises(TypeError, match="takes no arguments"):
        timm.create_model(name, drop_rate=0.1)


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray at a time (test_ray_jobs.py says why)
def test_tune_trains_two_candidates_at_once_with_asha_and_records_them_with_the_study(tmp_path):
    from tests.conftest import TINY_SEARCH

    code, out, err = run_in_process(
        "search", *TINY_SEARCH, "n_trials=8", "objectives=[accuracy,params]", "study_name=two", cwd=tmp_path
    )
    assert code == 0, out + err
    front = optuna.load_study(study_name="two", storage=f"sqlite:///{tmp_path}/nas.db").best_trials
    assert len(front) >= 2, "the test needs a front of two or more"
    args = ["train", "study_name=two", "front=true", "trainer=tune", "trainer.max_concurrent=2"]
    code, out, err = run_in_process(
        *args, "retrain.epochs=6", "retrain.warmup_epochs=0", "progress=false", cwd=tmp_path
    )
    assert code == 0, out + err
    records = list(_records(tmp_path, "retrained:").values())
    assert sorted(int(r["name"]) for r in records) == sorted(t.number for t in front)
    for r in records:  # trained to the end, or stopped by ASHA at a rung with its last figures
        assert (r["epochs"] == 6 and not r["stopped_early"]) or (1 <= r["epochs"] < 6 and r["stopped_early"])
        assert 0 <= r["val_top1"] <= 100
    assert any(not r["stopped_early"] for r in records)  # the best one always reaches the end
    spans = sorted((r["started_at"], r["finished_at"]) for r in records)  # time.time() in each trial
    assert spans[1][0] < spans[0][1], f"the trials did not overlap: {spans}"
    assert (tmp_path / ".nas_cache" / "tune").is_dir()  # Tune's experiment state, for its restore


def test_report_shows_front_retrained_baselines_and_hypervolume_against_random(tmp_path):
    """Two studies of the same space, data and profiler (random, TPE), the front retrained, one
    baseline trained and measured: one page and one PNG that show them all."""
    from tests.conftest import TINY_SEARCH

    for sampler, name in (("random", "tiny-random"), ("tpe", "tiny-tpe")):
        code, out, err = run_in_process(
            "search", *TINY_SEARCH, "n_trials=8", f"sampler={sampler}", f"study_name={name}", cwd=tmp_path
        )
        assert code == 0, out + err
    for source in ("front=true", "timm=mobilenetv3_small_050"):
        code, out, err = run_in_process("train", "study_name=tiny-tpe", source, *QUICK, cwd=tmp_path)
        assert code == 0, out + err
    (baseline,) = _records(tmp_path, "baseline:", study="tiny-tpe").values()
    assert baseline["measured"]["unit"] == "ms" and baseline["measured"]["latency"]["median"] > 0

    code, out, err = run_in_process("report", "study_name=tiny-tpe", "out_dir=rep", cwd=tmp_path)
    assert code == 0, out + err
    page = (tmp_path / "rep" / "tiny-tpe.html").read_text()
    png = (tmp_path / "rep" / "tiny-tpe.png").read_bytes()
    assert png.startswith(b"\x89PNG") and "data:image/png;base64," in page
    assert "mobilenetv3_small_050" in page and "tiny-random" in page and "RandomSampler" in page
    study = optuna.load_study(study_name="tiny-tpe", storage=f"sqlite:///{tmp_path}/nas.db")
    for t in study.best_trials:
        assert f"<td>{t.number}</td>" in page
    assert "1 other studies" in " ".join(out.split())


def test_hypervolume_curve_and_trials_to_reach():
    from optuna.trial import create_trial

    from nas.report import hypervolume_curve, trials_to_reach

    def trial(number, top1, ms):
        t = create_trial(
            values=[top1, ms], user_attrs={"top1": top1, "latency": {"median": ms, "unit": "ms"}}
        )
        t.number = number
        return t

    trials = [trial(0, 50.0, 2.0), trial(1, 60.0, 3.0), trial(2, 55.0, 1.0), trial(3, 40.0, 4.0)]
    counts, values = hypervolume_curve(trials, reference=__import__("numpy").array([-40.0, 4.0]))
    assert counts == [1, 2, 3, 4]
    # By hand, against (40 %, 4 ms): (50, 2) covers 10 x 2 = 20; (60, 3) adds 10 x 1 = 30; (55, 1)
    # covers 15 x 3 = 45 plus the 5 x 1 of (60, 3) beyond it = 50; (40, 4) is on the reference.
    assert values == [20.0, 30.0, 50.0, 50.0]
    assert trials_to_reach(counts, values, 30.0) == 2 and trials_to_reach(counts, values, 1e9) is None


def test_timm_baselines_upsample_as_matrix_products_with_the_same_values():
    """efficientformerv2's bilinear nn.Upsample is swapped for the separable one (a CUDA speed
    fix): the model computes what timm's own does, in torch and through ONNX Runtime, and the
    matrix form (the CUDA path) gives nn.Upsample's values at the sizes it meets."""
    from types import SimpleNamespace

    import onnxruntime as ort
    import timm

    from latency_models.onnx_io import to_onnx
    from nas.training.baselines import SeparableUpsample, timm_model

    data = SimpleNamespace(num_classes=10, in_channels=1, image_size=28)
    ours = timm_model("efficientformerv2_s0", data).eval()
    plain = timm.create_model("efficientformerv2_s0", num_classes=10, in_chans=1, img_size=28).eval()
    plain.load_state_dict(ours.state_dict())
    swapped = [m for m in ours.modules() if isinstance(m, SeparableUpsample)]
    assert swapped and not any(type(m) is torch.nn.Upsample for m in ours.modules())
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        expected = plain(x)
        torch.testing.assert_close(ours(x), expected)
    session = ort.InferenceSession(to_onnx(ours, (1, 28, 28)), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-3, atol=1e-4)
    for (h, w), settings in [
        ((1, 1), {"scale_factor": 2}),
        ((2, 3), {"scale_factor": 2}),
        ((7, 7), {"size": (14, 14)}),
        ((4, 5), {"scale_factor": 2, "align_corners": True}),
    ]:
        upsample = SeparableUpsample(mode="bilinear", **settings)
        maps = torch.rand(2, 3, h, w)
        torch.testing.assert_close(upsample.separable(maps), upsample(maps))


def test_mps_is_seen_where_cuda_clients_look_for_its_control_pipe(tmp_path, monkeypatch):
    """``nas train trainer=tune`` hints at MPS when fractional GPUs would time-slice: the check
    follows CUDA_MPS_PIPE_DIRECTORY as CUDA's clients do."""
    from nas.training.tune import mps_running

    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    assert not mps_running()
    os.mkfifo(tmp_path / "control")
    assert mps_running()


def test_each_candidate_says_how_it_starts_and_where_its_result_is_stored():
    """The stored keys and records of the three kinds of candidate, exactly as studies hold them
    (retrained:<name>:<init>:<recipe key>, baseline:<timm name>:<recipe key>; the run's result
    with its kind and name, a baseline's latency as ``measured``)."""
    from types import SimpleNamespace

    from nas.records import RunRecord
    from nas.training.candidates import ArchFile, StudyTrial, TimmBaseline
    from nas.training.loop import Retrained
    from nas.training.recipe import RetrainRecipe

    recipe = RetrainRecipe(batch_size=512, lr=0.003)
    trial = StudyTrial("3", build=lambda: torch.nn.Identity(), inherited_top1=80.0, latency=0.5)
    arch = ArchFile("arch-abc", build=lambda: torch.nn.Identity())
    baseline = TimmBaseline("resnet10t", build=lambda: torch.nn.Flatten())
    assert (trial.init_for("inherit"), arch.init_for("inherit"), baseline.init_for("inherit")) == (
        "inherit",
        "scratch",
        "scratch",
    )
    assert trial.record_key("inherit", recipe) == "retrained:3:inherit:5a0af21f5d"
    assert arch.record_key("scratch", recipe) == "retrained:arch-abc:scratch:5a0af21f5d"
    assert baseline.record_key("scratch", recipe) == "baseline:resnet10t:5a0af21f5d"
    assert (trial.label, arch.label, baseline.label) == ("trial 3", "arch-abc", "resnet10t")
    assert [c.measures_latency for c in (trial, arch, baseline)] == [False, False, True]

    result = Retrained(81.0, None, 30, 12.5, 1000, {"epochs": 30}, "scratch", "cpu", False)
    expected = result.to_dict() | {"kind": "trial", "name": "3", "trials": [3]}  # the trials it stands for
    assert trial.record(result).to_dict() == expected
    assert RunRecord.from_dict(trial.record(result).to_dict()).trial == 3

    figure = SimpleNamespace(median=0.25, to_dict=lambda: {"median": 0.25})
    profiler = SimpleNamespace(
        name="onnxruntime", unit="ms", settings=lambda: {"runs": 5}, measure_module=lambda m, shape: figure
    )
    baseline.measure(profiler, (1, 28, 28))
    measured = {"name": "onnxruntime", "unit": "ms", "settings": {"runs": 5}, "latency": {"median": 0.25}}
    assert baseline.latency == 0.25 and baseline.measured == measured
    stored = baseline.record(result).to_dict()
    assert stored == result.to_dict() | {"kind": "baseline", "name": "resnet10t", "measured": measured}
    assert RunRecord.from_dict(stored).baseline_latency() == (0.25, "ms")

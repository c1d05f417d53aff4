"""int8 deployment end to end on the tiny space: a real search with ``profiler.quantize=int8``
(candidates quantized, timed and scored as int8; figures keyed apart from float ones), the
exported int8 model checked against the float one, ``nas train`` quantizing what it trained,
and bad input refused."""

import json
import shutil

import numpy as np
import onnxruntime as ort
import optuna
import pytest
import sqlalchemy as sa

from nas.data import Embedded
from nas.quantized import MIN_AGREEMENT, PARITY_IMAGES
from tests.conftest import TINY_SEARCH, run_in_process

INT8 = ["profiler.quantize=int8", "profiler.calibration_images=128"]
QUICK = ["retrain.epochs=1", "retrain.warmup_epochs=0", "retrain.batch_size=256", "progress=false"]


@pytest.fixture
def int8_study(tiny_study, tmp_path):
    """A copy of the session's float tiny study with an int8 study beside it in the same
    database (same supernet), searched with int8 as the accuracy objective."""
    folder = tmp_path / "study"
    shutil.copytree(tiny_study, folder)
    code, out, err = run_in_process(
        "search", *TINY_SEARCH, *INT8, "accuracy=int8", "study_name=int8", "n_trials=4", cwd=folder
    )
    assert code == 0, out + err
    assert "Supernet reused" in out and "float / int8 val top-1" in out
    return folder


def _latency_rows(folder):
    engine = sa.create_engine(f"sqlite:///{folder}/nas.db")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select subject_key, profiler_key, profiler from nas_latency")).all()
    engine.dispose()
    return rows


def test_int8_search_measures_and_scores_int8_models_keyed_apart(int8_study):
    storage = f"sqlite:///{int8_study}/nas.db"
    study = optuna.load_study(study_name="int8", storage=storage)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 4
    settings = study.user_attrs["nas"]["profiler"]["settings"]
    assert settings["quantize"] == "int8" and study.user_attrs["nas"]["accuracy"] == "int8"
    val_images = round(6000 * 0.2)  # the embedded data's validation split
    for t in trials:
        int8 = t.user_attrs["int8"]
        assert int8["quantization"] == "int8" and int8["images"] == val_images
        assert "training split, 128 images" in int8["calibration"]
        assert 0 <= int8["top1"] <= 100 and int8["float_top1"] == t.user_attrs["top1"]
        assert abs(int8["drop"]) < 5  # int8 loses a little, never the model
        assert t.values[0] == int8["top1"]  # accuracy=int8: the objective is the int8 model's
        assert t.user_attrs["profiler"]["settings"]["quantize"] == "int8"

    # Float and int8 figures of the same architectures (every study starts with the space's
    # largest and smallest member) sit in one latency table under different profiler keys.
    by_subject: dict[str, set[str]] = {}
    kinds = {}
    for subject, pkey, profiler in _latency_rows(int8_study):
        by_subject.setdefault(subject, set()).add(pkey)
        kinds[pkey] = json.loads(profiler)["settings"].get("quantize", "none")
    shared = [s for s, keys in by_subject.items() if len(keys) == 2]
    assert len(shared) >= 2
    for subject in shared:
        assert sorted(kinds[k] for k in by_subject[subject]) == ["int8", "none"]
    floats = optuna.load_study(study_name="tiny-fashion_mnist_6k", storage=storage).trials
    assert all("int8" not in t.user_attrs for t in floats)  # the float study is as it was


def test_export_writes_the_int8_model_the_figures_describe(int8_study):
    study = optuna.load_study(study_name="int8", storage=f"sqlite:///{int8_study}/nas.db")
    best = max(study.best_trials, key=lambda t: t.values[0])
    code, out, err = run_in_process(
        "export", "study_name=int8", f"trial={best.number}", "out_dir=out", cwd=int8_study
    )
    assert code == 0, out + err
    assert "agrees with the float model on" in out and f"{MIN_AGREEMENT:.0%} required" in out
    manifest = json.loads((int8_study / "out" / "export.json").read_text())
    parity = manifest["int8"]["parity"]
    assert parity["passed"] and parity["top1_agreement"] >= MIN_AGREEMENT
    assert parity["images"] == PARITY_IMAGES and parity["max_abs_logit_diff"] >= 0
    assert "model_int8.onnx" in manifest["files"]

    # Its top-1 on the whole validation split is the trial's int8 figure: the same model.
    data = Embedded().load()
    _, val_idx = data.split(**study.user_attrs["nas"]["split"])
    images = data.images[val_idx].float().div(255).numpy()
    session = ort.InferenceSession(str(int8_study / "out" / "model_int8.onnx"))
    logits = np.concatenate(
        [session.run(None, {"images": images[i : i + 300]})[0] for i in range(0, len(images), 300)]
    )
    top1 = 100.0 * float((logits.argmax(1) == data.labels[val_idx].numpy()).mean())
    assert top1 == pytest.approx(best.user_attrs["int8"]["top1"], abs=1e-6)

    # A float study's trial exported as int8 when asked; without asking, no int8 model.
    code, out, err = run_in_process(
        "export", "study_name=tiny-fashion_mnist_6k", "trial=0", "out_dir=f", cwd=int8_study
    )
    assert code == 0, out + err
    assert not (int8_study / "f" / "model_int8.onnx").exists()
    code, out, err = run_in_process(
        "export", "study_name=tiny-fashion_mnist_6k", "trial=0", "out_dir=f8", *INT8, cwd=int8_study
    )
    assert code == 0, out + err
    assert json.loads((int8_study / "f8" / "export.json").read_text())["int8"]["parity"]["passed"]


def test_train_quantizes_and_scores_what_it_trained(int8_study):
    code, out, err = run_in_process("train", "study_name=int8", "trial=0", *INT8, *QUICK, cwd=int8_study)
    assert code == 0, out + err
    assert "int8 val top-1" in out
    study = optuna.load_study(study_name="int8", storage=f"sqlite:///{int8_study}/nas.db")
    (record,) = [v for k, v in study.user_attrs.items() if k.startswith("retrained:0:")]
    int8 = record["int8"]
    assert int8["float_top1"] == record["val_top1"] and 0 <= int8["top1"] <= 100
    assert abs(int8["drop"]) < 5 and "training split" in int8["calibration"]

    code, out, err = run_in_process(
        "train", "study_name=int8", "timm=test_resnet", *INT8, *QUICK, cwd=int8_study
    )
    assert code == 0, out + err
    (baseline,) = [v for k, v in study.user_attrs.items() if k.startswith("baseline:test_resnet:")]
    assert baseline["measured"]["settings"]["quantize"] == "int8"  # timed as an int8 model
    assert baseline["int8"]["quantization"] == "int8" and 0 <= baseline["int8"]["top1"] <= 100


@pytest.mark.parametrize(
    "args, words",
    [
        (["profiler.quantize=int4"], "profiler.quantize"),
        (["profiler.quantize=int8", "profiler.calibration_images=0"], "profiler.calibration_images"),
        (["accuracy=int8"], "accuracy: int8"),
        (["accuracy=int4"], "accuracy"),
        (["profiler=flops", "+profiler.quantize=int8"], "profiler.quantize"),
        (["profiler.quantize=int8", "accuracy=int8", "objectives=[latency,params]"], "accuracy"),
    ],
)
def test_bad_int8_input_is_one_line_and_exit_2(args, words, tmp_path):
    common = TINY_SEARCH if "profiler=flops" not in args else ["+space=tiny", "progress=false"]
    code, out, err = run_in_process("search", *common, *args, "n_trials=2", cwd=tmp_path)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and words in lines[0], err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []  # nothing written

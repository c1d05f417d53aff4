"""Profilers from other packages: a real package installed with pip, found through the
``nas.latency_models`` entry points, selected by ``profiler=NAME`` and used by a search."""

import json
import subprocess
import sys

import optuna
import pytest

from latency_models import create_profiler, list_profilers
from latency_models.conformance import check_profiler
from tests.conftest import REPO, run_nas

PLUGIN = REPO / "examples" / "nas-flops-rate"
pytestmark = pytest.mark.xdist_group("plugins")  # one pip install for the module, in one worker


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """The example plugin installed by pip into a folder of its own (added to PYTHONPATH)."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "--target", str(site), str(PLUGIN)],
        check=True,
        capture_output=True,
    )
    assert (site / "nas_flops_rate.py").is_file()
    assert list(site.glob("nas_flops_rate-0.1.0.dist-info/entry_points.txt"))
    return site


def test_readme_shows_the_example_plugin_verbatim():
    readme = (REPO / "README.md").read_text()
    for name in ("pyproject.toml", "nas_flops_rate.py"):
        assert (PLUGIN / name).read_text().strip() in readme, f"README lacks examples/nas-flops-rate/{name}"


def test_builtins_pass_the_conformance_check(tiny_space):
    arch = tiny_space.largest()
    for name, settings in [
        ("onnxruntime", {"runs": 5, "warmup": 1}),
        ("torch", {"device": "cpu", "runs": 5, "warmup": 1}),
        ("flops", {}),
        ("flops", {"metric": "params"}),
    ]:
        check_profiler(create_profiler(name, **settings), arch)


def test_installed_plugin_is_listed_and_passes_conformance(plugin_site):
    code = (
        "import json; from latency_models import list_profilers, create_profiler;"
        "from latency_models.conformance import check_profiler; from search_spaces.vit import VitSpace;"
        "from tests.conftest import TINY;"
        "r = check_profiler(create_profiler('flops_rate', gflops_per_s=4.0), VitSpace(**TINY).largest());"
        "print(json.dumps([list_profilers(), r.median]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": f"{REPO}:{plugin_site}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    names, median = json.loads(out.stdout)
    assert "flops_rate" in names and median > 0
    assert "flops_rate" not in list_profilers()  # this process does not have it installed


@pytest.mark.slow
def test_search_with_an_installed_plugin_profiler(tmp_path, plugin_site):
    args = ["+space=tiny", "supernet.epochs=1", "n_trials=5", "profiler=flops_rate"]
    result = run_nas("search", *args, "profiler.gflops_per_s=2.5", cwd=tmp_path, extra_path=plugin_site)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="tiny-fashion_mnist_6k", storage=f"sqlite:///{tmp_path}/nas.db")
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 5
    for t in trials:
        assert t.user_attrs["profiler"] == {
            "name": "flops_rate",
            "settings": {"gflops_per_s": 2.5, "batch_size": 1},
        }
        # FLOPs at 2.5 GFLOP/s: the plugin's own figure, in the study as the latency objective.
        assert t.values[1] == pytest.approx(t.user_attrs["flops"] / 2.5e6)
        assert t.user_attrs["latency_source"] == "computed"

    # A misspelt plugin setting: one line naming it, exit 2, nothing added to the study.
    typo = run_nas("search", *args, "profiler.gflops=3", cwd=tmp_path, extra_path=plugin_site)
    assert typo.returncode == 2 and "gflops" in typo.stderr and "Traceback" not in typo.stderr
    assert len(typo.stderr.strip().splitlines()) == 1
    assert len(study.get_trials()) == 5


def test_unknown_profiler_lists_builtins(tmp_path):
    result = run_nas("search", "+space=tiny", "profiler=tensorrt", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown profiler 'tensorrt" in result.stderr and "predictor" in result.stderr
    assert "plugin" not in result.stderr.split("valid:")[1]
    assert not (tmp_path / "nas.db").exists()

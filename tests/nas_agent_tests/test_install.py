"""The agent installs on a target without torch: its distribution (agent/pyproject.toml) requires
ONNX Runtime and numpy only, nothing they pull is torch, and the agent runs (and measures a real
model) with just what its install would lay out, torch nowhere to be imported."""

import json
import subprocess
import sys

import torch

from latency_models.onnx_io import to_onnx
from tests.nas_agent_tests.conftest import BOOT, agent_command, agent_env

HEAVY = {"torch", "torchvision", "timm", "optuna", "sqlalchemy", "fastapi", "hydra-core", "onnx", "pydantic"}


def test_the_agents_install_pulls_onnxruntime_and_numpy_and_no_torch(agent_install):
    assert sorted(r.split(">")[0].split("=")[0] for r in agent_install["requirements"]) == [
        "numpy",
        "onnxruntime",
    ]
    pulled = agent_install["pulled"]
    assert {"onnxruntime", "numpy"} <= pulled and not pulled & HEAVY, pulled


def test_the_agent_runs_and_measures_with_its_install_alone(agent_install, tmp_path):
    site = agent_install["site"]
    help_ = subprocess.run(agent_command(site, "--help"), capture_output=True, text=True, env=agent_env())
    assert help_.returncode == 0 and "server=URL" in help_.stdout, help_.stderr
    bad = subprocess.run(
        agent_command(site, "server=ftp://x"), capture_output=True, text=True, env=agent_env()
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "token" in bad.stderr, bad.stderr

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    (tmp_path / "m.onnx").write_bytes(to_onnx(model, (1, 28, 28)))
    code = f"""
import json, sys
from nas_agent.measure import OrtSettings, measure_onnx
timed = measure_onnx(open({str(tmp_path / "m.onnx")!r}, "rb").read(), (1, 28, 28),
                     OrtSettings(warmup=2, runs=10, rounds=2, retries=0))
try:
    import torch
    found = True
except ImportError:
    found = False
print(json.dumps({{"rounds": timed.rounds, "torch": found,
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in {sorted(HEAVY)!r})}}))
"""
    script = tmp_path / "measure.py"
    script.write_text(code)
    boot = BOOT.replace(
        "from nas_agent.cli import console_main; console_main()", "exec(open(sys.argv[1]).read())"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", boot, str(site), str(script)],
        capture_output=True,
        text=True,
        env=agent_env(),
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["torch"] is False and answer["loaded"] == []
    assert sum(len(r) for r in answer["rounds"]) >= 10 and all(x > 0 for r in answer["rounds"] for x in r)


def test_nas_agent_is_the_same_command(tmp_path):
    from tests.conftest import run_in_process

    code, out, err = run_in_process("agent", "--help", cwd=tmp_path)
    assert code == 0 and "server=URL" in out
    code, out, err = run_in_process("agent", "server=http://127.0.0.1:9", "colour=red", cwd=tmp_path)
    assert code == 2 and err.strip() == "nas agent: error: unknown argument 'colour=red'; keys: " + ", ".join(
        ("server", "token", "token_file", "target", "lease_s", "poll_s", "max_requests")
    )

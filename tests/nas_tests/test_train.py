"""Supernet training: a SIGKILLed run resumes from its checkpoint and ends where an
uninterrupted run ends."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO

ARGS = [
    "+space=tiny",
    "supernet.epochs=4",
    "n_trials=1",
    "profiler.runs=2",
    "profiler.warmup=0",
    "progress=false",
]


def start(cwd, *extra):
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "nas", "search", *ARGS, *extra],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_killed_training_resumes_and_matches_uninterrupted(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    reference.mkdir(), killed.mkdir()
    assert start(reference).wait(timeout=300) == 0

    proc = start(killed, "checkpoint_every_s=0")
    deadline = time.time() + 120
    checkpoints = killed / ".nas_cache" / "supernets"
    while not list(checkpoints.glob("*/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = next(checkpoints.glob("*/checkpoint.pt"))
    step = torch.load(partial, weights_only=False)["step"]
    assert 0 < step < 4 * 37  # really stopped in the middle
    assert not list(checkpoints.glob("*/supernet.pt"))

    resumed = start(killed)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    final = torch.load(next(checkpoints.glob("*/supernet.pt")), weights_only=False)
    expected = torch.load(
        next((reference / ".nas_cache" / "supernets").glob("*/supernet.pt")), weights_only=False
    )
    assert final["meta"]["key"] == expected["meta"]["key"]
    for name, tensor in expected["model"].items():
        torch.testing.assert_close(final["model"][name], tensor, rtol=1e-4, atol=1e-5)
    assert not partial.exists()

"""Supernet training in two gloo processes started by torchrun (``supernet.devices=2`` on CPU):
it trains what one process trains at the same global batch, under the same cache key, and a run
whose rank is killed with SIGKILL fails in one line and resumes when rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from infra.errors import UserError
from nas.checkpoint import load_checkpoint
from nas.config import compose
from nas.search.setup import prepare
from nas.supernet_training import train_supernet
from tests.conftest import REPO, nas_in_process

# Four steps of 1,024 images: long enough to train, short enough that two processes' different
# float summation order stays at rounding level (Adam turns it into visible drift over hundreds).
RECIPE = [
    "+space=tiny",
    "supernet.epochs=1",
    "supernet.batch_size=1024",
    "supernet.translate=2",
    "supernet.flip=true",
]


def _train(tmp_path: Path, devices: int, *extra: str):
    cfg = compose(
        [*RECIPE, *extra, f"supernet.devices={devices}", "profiler=flops", f"cache_dir={tmp_path}/c{devices}"]
        + [f"storage=sqlite:///{tmp_path}/nas.db"]
    )
    setup = prepare(cfg)
    return train_supernet(
        setup.space, setup.space_config, setup.data, setup.train_idx, setup.val_idx, setup.split,
        setup.recipe, cfg.cache_dir, device="cpu", progress=False,
    )  # fmt: skip


@pytest.mark.slow
def test_two_gloo_processes_train_what_one_process_trains(tmp_path):
    one, two = _train(tmp_path, 1), _train(tmp_path, 2)
    assert not one.reused and not two.reused
    assert one.path.parent.name == two.path.parent.name  # one cache key: devices is not in it
    assert (one.meta["devices"], two.meta["devices"]) == (1, 2)
    assert (one.meta["torchrun"], two.meta["torchrun"]) == (False, True)
    assert one.meta["steps"] == two.meta["steps"] == 4 and two.meta["batch_size"] == 1024
    expected, got = one.net.state_dict(), two.net.state_dict()
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=1e-4, msg=name)
    assert two.meta["largest_top1"] == pytest.approx(one.meta["largest_top1"], abs=0.1)
    assert two.meta["smallest_top1"] == pytest.approx(one.meta["smallest_top1"], abs=0.1)
    again = _train(tmp_path, 2)  # the finished supernet is reused, not trained again
    assert again.reused and again.path == two.path
    with pytest.raises(UserError, match="supernet.batch_size"):
        _train(tmp_path, 3)  # 1,024 images do not split over 3 processes


def _descendants(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return children + [d for c in children for d in _descendants(c)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _is_rank(pid: int) -> bool:
    """A training process (not torchrun's agent, whose command line also names nas.distributed)."""
    command = _cmdline(pid)
    return "nas.distributed" in command and "torch.distributed.run" not in command


@pytest.mark.slow
def test_a_killed_rank_fails_the_run_in_one_line_and_the_rerun_resumes(tmp_path):
    args = [
        "search", *RECIPE, "supernet.epochs=2", "supernet.devices=2", "device=cpu", "profiler=flops",
        "n_trials=2", "progress=false",
    ]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "nas", *args]
    run = subprocess.Popen(
        [*command, "checkpoint_every_s=0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    supernets = tmp_path / ".nas_cache" / "supernets"
    deadline = time.time() + 180
    while not list(supernets.glob("*/checkpoint.pt")) and time.time() < deadline and run.poll() is None:
        time.sleep(0.05)
    processes = _descendants(run.pid)  # torchrun's agent and the two training processes
    ranks = [p for p in processes if _is_rank(p)]
    assert len(ranks) == 2, (ranks, run.poll())
    os.kill(ranks[1], signal.SIGKILL)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 1, err
    assert err.strip().splitlines()[-1].startswith("nas search: distributed training in 2 processes failed")
    partial = next(supernets.glob("*/checkpoint.pt"))
    step = load_checkpoint(partial)["step"]
    assert 0 < step < 8  # stopped in the middle (2 epochs of 4 steps)
    assert not list(supernets.glob("*/supernet.pt"))
    assert not [p for p in processes if _cmdline(p)], "a process of the failed run outlived it"

    rerun = nas_in_process(*args, cwd=tmp_path)  # the same command again (from this process)
    assert rerun.returncode == 0, rerun.stderr
    assert not partial.exists()
    final = load_checkpoint(next(supernets.glob("*/supernet.pt")))
    assert final["meta"]["devices"] == 2 and final["meta"]["steps"] == 8
    assert final["meta"]["resumed_at_step"] == step  # went on from the checkpoint
    # One process, never interrupted: over 8 steps the summation-order drift of two processes
    # stays below 1e-3 (measured max 5.8e-4).
    reference = _train(tmp_path, 1, "supernet.epochs=2")
    for name, tensor in reference.net.state_dict().items():
        torch.testing.assert_close(final["model"][name], tensor, rtol=0, atol=2e-3, msg=name)

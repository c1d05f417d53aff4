"""Supernet training: a SIGKILLed run resumes from its checkpoint and ends where an
uninterrupted run ends (the killed run is a process of its own; the reference and the rerun run
in this process)."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from nas.checkpoint import load_checkpoint
from tests.conftest import REPO, run_in_process

ARGS = [
    "+space=tiny",
    "supernet.epochs=2",
    "n_trials=1",
    "profiler.runs=2",
    "profiler.warmup=0",
    "progress=false",
]


def start(cwd, *extra):
    # As many torch threads as the runs in this process use: the same float summation order.
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(torch.get_num_threads())}
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
    code, out, err = run_in_process("search", *ARGS, cwd=reference)
    assert code == 0, out + err

    proc = start(killed, "checkpoint_every_s=0")
    deadline = time.time() + 120
    checkpoints = killed / ".nas_cache" / "supernets"
    while not list(checkpoints.glob("*/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = next(checkpoints.glob("*/checkpoint.pt"))
    step = load_checkpoint(partial)["step"]
    assert 0 < step < 2 * 37  # really stopped in the middle
    assert not list(checkpoints.glob("*/supernet.pt"))

    code, out, err = run_in_process("search", *ARGS, cwd=killed)  # the same command again
    assert code == 0, out + err
    final = load_checkpoint(next(checkpoints.glob("*/supernet.pt")))
    expected = load_checkpoint(next((reference / ".nas_cache" / "supernets").glob("*/supernet.pt")))
    assert final["meta"]["key"] == expected["meta"]["key"]
    for name, tensor in expected["model"].items():
        torch.testing.assert_close(final["model"][name], tensor, rtol=1e-4, atol=1e-5)
    assert not partial.exists()


def test_member_pool_is_seeded_distinct_and_redrawn_every_pool_epochs():
    from benchmarks._harness import load_space
    from nas.supernet_training import Recipe, member_pool

    space = load_space("vit")
    extremes = [space.largest(), space.smallest()]
    recipe = Recipe(member_pool=6, pool_epochs=3)
    pools = [[a.key() for a in member_pool(space, recipe, epoch, extremes)] for epoch in range(7)]
    assert all(len(p) == len(set(p)) == 6 for p in pools)
    assert not {a.key() for a in extremes} & set(sum(pools, []))
    assert pools[0] == pools[1] == pools[2] != pools[3] == pools[5] != pools[6]
    assert pools[4] == [a.key() for a in member_pool(space, recipe, 4, extremes)]  # a rerun repeats it
    with pytest.raises(ValueError, match="supernet.member_pool"):
        Recipe(member_pool=1, num_random=2)


def test_recipe_fields_added_later_keep_the_cache_key_at_their_defaults():
    """Supernets trained before member_pool / cuda_graphs / devices existed are still found in the
    cache (devices is never in the key: N processes train what one does)."""
    import dataclasses
    import hashlib
    import json

    from nas.data import ImageData
    from nas.supernet_training import Recipe, supernet_key

    data = ImageData("d", torch.arange(4) % 2, 2, 1, 8, images=torch.zeros(4, 1, 8, 8, dtype=torch.uint8))
    recipe = Recipe()
    old = {
        k: v
        for k, v in dataclasses.asdict(recipe).items()
        if k not in ("member_pool", "pool_epochs", "cuda_graphs", "devices")
    }
    blob = json.dumps(
        {"space": {"s": 1}, "data": data.fingerprint(), "split": {}, "recipe": old}, sort_keys=True
    )
    assert supernet_key({"s": 1}, data, {}, recipe) == hashlib.sha1(blob.encode()).hexdigest()[:12]
    assert supernet_key({"s": 1}, data, {}, Recipe(member_pool=4)) != supernet_key({"s": 1}, data, {}, recipe)
    # How many processes train it is not part of what is trained.
    two = Recipe(devices=2)
    assert supernet_key({"s": 1}, data, {}, two) == supernet_key({"s": 1}, data, {}, recipe)

"""Files another user can write (the shared cache folder, the study database) are read as data
only: a checkpoint that would run code when unpickled, a damaged one, a distributed run spec
without the launcher's HMAC, or a stored space that names anything but a search space class is
refused in one line naming the file (or the study and key), and the code never runs."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch

from infra.errors import UserError
from nas.checkpoint import load_checkpoint
from nas.distributed import KEY_ENV, launch, read_spec, write_spec
from tests.conftest import REPO, TINY_SEARCH, run_in_process, run_nas


class RunsCode:
    """Unpickled, it creates ``marker``: what a tampered file could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def tamper(path: Path, marker: Path, damage: str = "code") -> None:
    """Replace the file at ``path``: with one whose unpickling creates ``marker`` (``code``),
    with half of itself (``truncated``), or with nothing (``empty``)."""
    if damage == "code":
        torch.save({"model": {}, "meta": RunsCode(marker), "optimizer": {}, "step": 0, "elapsed_s": 0}, path)
    elif damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(b"")


def assert_refused(error: BaseException, named: str, marker: Path) -> None:
    message = str(error)
    assert isinstance(error, UserError), repr(error)
    assert "\n" not in message and named in message, message
    assert not marker.exists(), "the tampered file ran code"


def test_the_payload_runs_code_when_unpickled_without_weights_only(tmp_path):
    """The payload the other tests plant is live: only weights_only (or the HMAC) stops it."""
    path, marker = tmp_path / "supernet.pt", tmp_path / "MARKER"
    tamper(path, marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


# Supernet training: the cache folder's supernet.pt (finished) and checkpoint.pt (partial).


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny space's setup and a cache folder holding its supernet trained for one epoch."""
    from nas.config import compose
    from nas.search.setup import prepare

    folder = tmp_path_factory.mktemp("trained")
    overrides = ["+space=tiny", "supernet.epochs=1", "profiler=flops", f"cache_dir={folder}/cache"]
    cfg = compose([*overrides, f"storage=sqlite:///{folder}/nas.db"])
    setup = prepare(cfg)
    result = train(setup, folder / "cache")
    assert not result.reused
    return setup, folder / "cache", result.meta


def train(setup, cache: Path):
    from nas.supernet_training import train_supernet

    return train_supernet(
        setup.space, setup.space_config, setup.data, setup.train_idx, setup.val_idx, setup.split,
        setup.recipe, cache, device="cpu", progress=False,
    )  # fmt: skip


def cache_copy(trained, tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    shutil.copytree(trained[1], cache)
    return cache


def test_what_supernet_training_writes_loads_as_data(trained, tmp_path):
    setup, _, meta = trained
    cache = cache_copy(trained, tmp_path)
    final = next(cache.glob("supernets/*/supernet.pt"))
    saved = load_checkpoint(final, keys=("model", "meta"))
    assert saved["meta"] == meta and json.loads(json.dumps(meta)) == meta  # plain values only
    again = train(setup, cache)
    assert again.reused and again.meta == meta


@pytest.mark.parametrize("damage", ["code", "truncated", "empty"])
def test_a_tampered_finished_supernet_is_refused(trained, tmp_path, damage):
    setup = trained[0]
    cache = cache_copy(trained, tmp_path)
    final, marker = next(cache.glob("supernets/*/supernet.pt")), tmp_path / "MARKER"
    tamper(final, marker, damage)
    with pytest.raises(UserError) as e:
        train(setup, cache)
    assert_refused(e.value, str(final), marker)
    assert "is not a nas checkpoint" in str(e.value) and "delete it and rerun" in str(e.value)


@pytest.mark.parametrize("damage", ["code", "no_optimizer"])
def test_a_tampered_supernet_checkpoint_is_refused_before_training(trained, tmp_path, damage):
    setup = trained[0]
    cache = cache_copy(trained, tmp_path)
    final = next(cache.glob("supernets/*/supernet.pt"))
    partial, marker = final.with_name("checkpoint.pt"), tmp_path / "MARKER"
    final.unlink()  # an interrupted training: only its partial checkpoint is there
    if damage == "code":
        tamper(partial, marker)
    else:  # plain data, but not a training's checkpoint
        torch.save({"model": {}, "step": 3}, partial)
    with pytest.raises(UserError) as e:
        train(setup, cache)
    assert_refused(e.value, str(partial), marker)
    assert not final.exists()  # refused before any training
    if damage == "no_optimizer":
        assert "no optimizer, elapsed_s" in str(e.value)


# Stand-alone training (nas train): its run folder's partial checkpoint.


def retrain_inputs(space):
    from nas.data import ImageData
    from search_spaces.networks import build_model

    images = torch.randint(
        0, 256, (32, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    data = ImageData.of("synthetic", images, torch.arange(32) % 10, 10)
    torch.manual_seed(0)
    return build_model(space.smallest()), data


def test_a_stand_alone_trainings_checkpoint_with_optimizer_and_ema_loads_as_data(tiny_space, tmp_path):
    from nas.training.loop import retrain
    from nas.training.recipe import RetrainRecipe

    model, data = retrain_inputs(tiny_space)
    recipe = RetrainRecipe(epochs=2, batch_size=8, warmup_epochs=0, ema_decay=0.9)
    partial, seen = tmp_path / "run" / "checkpoint.pt", []

    def report(epoch: int, top1: float) -> None:  # after epoch 1 (just checkpointed) and at the end
        if partial.exists():
            seen.append(load_checkpoint(partial, keys=("model", "optimizer", "step", "elapsed_s", "ema")))

    result = retrain(
        model, data, torch.arange(24), torch.arange(24, 32), recipe, tmp_path / "run", "cpu", report=report
    )
    assert len(seen) == 1 and seen[0]["step"] == 3 and seen[0]["optimizer"]["state"]
    assert result.epochs == 2 and not partial.exists()


@pytest.mark.parametrize("damage", ["code", "truncated"])
def test_a_tampered_stand_alone_training_checkpoint_is_refused(tiny_space, tmp_path, damage):
    from nas.training.loop import retrain
    from nas.training.recipe import RetrainRecipe

    model, data = retrain_inputs(tiny_space)
    run_dir, marker = tmp_path / "run", tmp_path / "MARKER"
    run_dir.mkdir()
    partial = run_dir / "checkpoint.pt"
    torch.save({"model": model.state_dict()}, partial)
    tamper(partial, marker, damage)
    recipe = RetrainRecipe(epochs=1, batch_size=8, warmup_epochs=0)
    with pytest.raises(UserError) as e:
        retrain(model, data, torch.arange(24), torch.arange(24, 32), recipe, run_dir, "cpu")
    assert_refused(e.value, str(partial), marker)
    assert not (run_dir / "result.json").exists()


# The torchrun spec: arbitrary objects, so unpickled only once the launcher's HMAC checks out.


def spec_of(marker: Path) -> dict:
    return {
        "target": "nas.supernet_training:train_supernet",
        "args": (RunsCode(marker),),
        "kwargs": {},
        "device": "cpu",
    }


def test_a_distributed_spec_without_the_launchers_hmac_is_never_unpickled(tmp_path):
    key, marker = secrets.token_bytes(32), tmp_path / "MARKER"
    signed = tmp_path / "signed.pt"
    write_spec(spec_of(marker), signed, key)
    assert signed.stat().st_mode & 0o777 == 0o600
    forged = tmp_path / "forged.pt"  # a valid HMAC under another key
    write_spec(spec_of(marker), forged, secrets.token_bytes(32))
    unsigned = tmp_path / "unsigned.pt"  # no HMAC at all (as torch.save writes it)
    torch.save(spec_of(marker), unsigned)
    changed = tmp_path / "changed.pt"  # the launcher's file with one byte changed
    data = bytearray(signed.read_bytes())
    data[-100] ^= 1
    changed.write_bytes(bytes(data))
    short = tmp_path / "short.pt"
    short.write_bytes(signed.read_bytes()[:20])
    for path, given in [(forged, key), (unsigned, key), (changed, key), (short, key), (signed, b"")]:
        with pytest.raises(UserError) as e:
            read_spec(path, given)
        assert_refused(e.value, str(path), marker)
    read_spec(signed, key)  # the launcher's own spec under its key is read: the payload runs
    assert marker.exists()


def test_a_forged_spec_ends_the_rank_process_in_one_line(tmp_path):
    """``python -m nas.distributed SPEC`` as torchrun starts it, with a key the spec was not
    written under: exit code 2, one line on stderr, nothing unpickled."""
    spec, marker = tmp_path / "spec.pt", tmp_path / "MARKER"
    write_spec(spec_of(marker), spec, secrets.token_bytes(32))
    env = os.environ | {"PYTHONPATH": str(REPO), KEY_ENV: secrets.token_hex(32)}
    run = subprocess.run(
        [sys.executable, "-m", "nas.distributed", str(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and str(spec) in lines[0] and "HMAC" in lines[0], run.stderr
    assert not marker.exists()


def record_spec(out: str, rank) -> None:
    """A distributed target: records where its spec was and what the process was handed."""
    spec = Path(sys.argv[-1])
    facts = {
        "spec": str(spec),
        "folder_mode": spec.parent.stat().st_mode & 0o777,
        "file_mode": spec.stat().st_mode & 0o777,
        "key_in_env": KEY_ENV in os.environ,
        "world": rank.world,
    }
    Path(out).write_text(json.dumps(facts))


def test_launch_hands_the_spec_over_in_a_private_folder_and_removes_it(tmp_path):
    out = tmp_path / "facts.json"
    launch("tests.nas_tests.test_untrusted_files:record_spec", (str(out),), {}, 1, torch.device("cpu"))
    facts = json.loads(out.read_text())
    assert facts["world"] == 1 and (facts["folder_mode"], facts["file_mode"]) == (0o700, 0o600)
    assert not facts["key_in_env"]  # read, then taken out of the environment its children inherit
    assert not Path(facts["spec"]).parent.exists()  # removed afterwards
    assert KEY_ENV not in os.environ


# The study database: the space config stored with a study is rebuilt only as a search space.


def study_copy(tiny_study: Path, tmp_path: Path) -> tuple[Path, optuna.Study]:
    work = tmp_path / "work"
    shutil.copytree(tiny_study, work)
    return work, optuna.load_study(study_name=None, storage=f"sqlite:///{work}/nas.db")


SPACES = {
    "os.system": lambda space, marker: {"_target_": "os.system", "_args_": [f"touch {marker}"]},
    "builtins.open": lambda space, marker: {"_target_": "builtins.open", "file": str(marker), "mode": "w"},
    "a class": lambda space, marker: {"_target_": "subprocess.Popen", "args": ["touch", str(marker)]},
    "nested": lambda space, marker: (
        space | {"attention": ["linear", {"_target_": "os.system", "_args_": [f"touch {marker}"]}]}
    ),
}


@pytest.mark.parametrize("case", list(SPACES))
def test_a_stored_space_that_builds_anything_but_a_search_space_is_refused(tiny_study, tmp_path, case):
    from nas.export import check_stored_space
    from nas.records import STUDY_ATTR

    work, study = study_copy(tiny_study, tmp_path)
    info = study.user_attrs[STUDY_ATTR]
    check_stored_space(info["space"], study.study_name)  # what nas search stored passes
    marker = tmp_path / "MARKER"
    study.set_user_attr(STUDY_ATTR, info | {"space": SPACES[case](info["space"], marker)})
    code, out, err = run_in_process("export", "trial=0", cwd=work)
    assert code == 2, out + err
    key = "space.attention.1._target_" if case == "nested" else "space._target_"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and repr(study.study_name) in lines[0] and key in lines[0], err
    assert not marker.exists() and not (work / "export").exists()


def test_nas_commands_refuse_a_tampered_supernet_in_the_cache_in_one_line(tiny_study, tmp_path):
    """``nas export`` (its own process: real stderr) and ``nas search`` topping the study up find
    the study's supernet.pt replaced by a payload: exit code 2, one line naming it, no traceback."""
    from nas.records import STUDY_ATTR

    work, study = study_copy(tiny_study, tmp_path)
    info = study.user_attrs[STUDY_ATTR]
    final = work / Path(info["supernet_path"]).relative_to(tiny_study.resolve())  # the copy's cache
    study.set_user_attr(STUDY_ATTR, info | {"supernet_path": str(final)})
    marker = tmp_path / "MARKER"
    tamper(final, marker)

    run = run_nas("export", "trial=0", cwd=work)
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and repr(str(final)) in lines[0] and "Traceback" not in run.stderr, run.stderr
    assert lines[0].startswith("nas export: error:") and "is not a nas checkpoint" in lines[0]

    code, out, err = run_in_process("search", *TINY_SEARCH, "n_trials=5", cwd=work)
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and repr(str(final.relative_to(work))) in lines[0], err  # cache_dir=.nas_cache
    assert not marker.exists()

"""Bad input, across every subcommand: exit code 2, exactly one stderr line naming the key or
file, no traceback, and nothing written (the working directory, the study folder and the input
files are unchanged). Runs in-process (tests.conftest.run_in_process): no process boundary is
under test here; tests/nas_tests/test_cli.py checks the real ``nas`` process."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import run_in_process

VIT_SPACE = """\
_target_: search_spaces.vit.VitSpace
name: mine
patch_size: [7]
embed_dim: [16]
depth: [1, 2]
head_dim: 8
num_heads: [1]
mlp_ratio: [1]
attention: [softmax]
activation: [relu]
"""

HYBRID_SPACE = """\
_target_: search_spaces.hybrid.HybridSpace
name: mine
stages:
  - {width: [16], conv_blocks: [1, 1], attention_blocks: [0, 0]}
  - {width: [32], conv_blocks: [0, 1], attention_blocks: [1, 1]}
expansion: [2]
head_dim: 8
num_heads: [1]
mlp_ratio: [2]
attention: [softmax]
activation: [relu]
"""

# Broken user spaces: folder name -> the space file's text.
USER_SPACES = {
    "yaml_error": VIT_SPACE.replace("depth: [1, 2]", "depth: [1, 2"),
    "misspelt_key": VIT_SPACE.replace("attention:", "atention:"),
    "unknown_op": VIT_SPACE.replace("[softmax]", "[softmax, flsh]"),
    "bad_pattern": VIT_SPACE + "mlp_pattern: [dense, '3:4']\n",
    "bad_level": VIT_SPACE + "mlp_sparsity: [0.5, 1.5]\n",
    "unquoted_nm": HYBRID_SPACE + "conv_pattern: [dense, 2:4]\n",
    "hybrid_key": HYBRID_SPACE.replace("conv_blocks: [0, 1]", "conv_block: [0, 1]"),
    "hybrid_op": HYBRID_SPACE.replace("[softmax]", "[softmax, sparse]"),
    "hybrid_level": HYBRID_SPACE + "conv_sparsity: [0.5, 2]\n",
    "bad_target": VIT_SPACE.replace("VitSpace", "NoSuchSpace"),
    "not_a_mapping": "- just\n- a list\n",
    "patch": VIT_SPACE.replace("patch_size: [7]", "patch_size: [5]"),
    "depth_range": VIT_SPACE.replace("depth: [1, 2]", "depth: [3, 1]"),
    "wrong_type": VIT_SPACE.replace("head_dim: 8", "head_dim: eight"),
}


@pytest.fixture(scope="session")
def inputs(tmp_path_factory, tiny_study) -> Path:
    """Files that bad invocations point at: corrupt databases, YAML and datasets, user folders,
    a previous export. Made once; every case checks it is left unchanged."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "notes.txt").write_text("a user's file\n")
    (root / "corrupt.db").write_bytes(b"this is not an SQLite database" * 100)
    (root / "empty.db").write_bytes(b"")
    with sqlite3.connect(root / "foreign.db") as db:
        db.execute("create table invoices (id integer primary key, total real)")
    (root / "broken.yaml").write_text("patch_size: [7\nembed_dim: 16\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "notarch.yaml").write_text("colour: blue\n")
    (root / "predictor.json").write_text("{not json")
    (root / "empty_dir").mkdir()
    (root / "link").symlink_to(root / "empty_dir", target_is_directory=True)
    (root / "user_folder").mkdir()
    (root / "user_folder" / "NOTES.txt").write_text("keep me\n")
    # image folders: one class with a file that is not an image; one with no class folders
    (root / "images_corrupt" / "shirt").mkdir(parents=True)
    (root / "images_corrupt" / "shirt" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "images_corrupt" / "trouser").mkdir()
    Image.new("L", (28, 28), 128).save(root / "images_corrupt" / "trouser" / "fine.png")
    (root / "images_no_classes").mkdir()
    (root / "images_no_classes" / "readme.txt").write_text("no class folders here\n")
    # Fashion-MNIST whose files are truncated
    raw = root / "fmnist_truncated" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (raw / name).write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x10" + b"\x00" * 20)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00")
    for folder, text in USER_SPACES.items():
        (root / "conf" / folder / "space").mkdir(parents=True)
        (root / "conf" / folder / "space" / "mine.yaml").write_text(text)
    # a previous export, and one the user has since added a file to
    for name in ("previous_export", "previous_export_plus"):
        code, out, err = run_in_process(
            "export",
            "trial=0",
            f"out_dir={root / name}",
            f"storage=sqlite:///{tiny_study}/nas.db",
            cwd=tiny_study,
        )
        assert code == 0, out + err
    (root / "previous_export_plus" / "NOTES.txt").write_text("my notes on this model\n")
    (root / "arch.yaml").write_text((root / "previous_export" / "arch.yaml").read_text())
    return root


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every path under ``roots`` with its kind, size and modification time (folders: kind
    only, since reading a database may create and remove side files in its folder)."""
    seen = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            if path.is_symlink() or path.is_dir():
                seen[str(path)] = ("link" if path.is_symlink() else "dir",)
            else:
                stat = path.stat()
                seen[str(path)] = ("file", stat.st_size, stat.st_mtime_ns)
    return seen


DB = "storage=sqlite:///{study}/nas.db"

# (command words..., overrides...) and the fragments the one error line must hold. Placeholders:
# {study} the tiny study's folder, {in} the inputs folder, {cwd} the (empty) working directory.
CASES = [
    # --- the command line itself
    (["serch"], ["unknown command 'serch'", "search"]),
    (["latency"], ["nas latency needs one of fit, eval"]),
    (["latency", "fitt", "+space=tiny"], ["fit, eval", "'fitt'"]),
    (["search", "+space=tiny", "--config-dir", "{cwd}/nowhere"], ["--config-dir", "nowhere"]),
    (["search", "+space=tiny", "--config-dir"], ["--config-dir"]),
    (["search", "+space=tiny", "--verbose"], ["unknown option '--verbose'"]),
    (["search", "+space=tiny", "n_trials"], ["n_trials"]),
    (["search", "+space=tiny", "n_trials=[1"], ["n_trials"]),
    # --- search: the space
    (["search"], ["space", "+space=NAME", "tiny, vit, vit_gpu"]),
    (["search", "space=tiny"], ["+space=NAME"]),
    (
        ["search", "+space=hexagon"],
        ["unknown space 'hexagon'", "valid: hybrid, hybrid_gpu, tiny, vit, vit_gpu"],
    ),
    (["search", "+space=tiny", "space.patch_size=[5]"], ["space.patch_size", "does not divide", "tiny.yaml"]),
    (["search", "+space=tiny", "space.patch_size=7"], ["space.patch_size", "list"]),
    (["search", "+space=tiny", "space.attention=[softmax,flash]"], ["space.attention", "'flash'"]),
    (["search", "+space=tiny", "space.depth=[3,1]"], ["space.depth"]),
    (["search", "+space=tiny", "space.embed_dim=[]"], ["space.embed_dim"]),
    (["search", "+space=tiny", "space.head_dim=abc"], ["space.head_dim"]),
    (["search", "+space=tiny", "space.mlp_ratio=[0]"], ["space.mlp_ratio"]),
    (["search", "+space=tiny", "+space.dropout=0.1"], ["space.dropout", "unknown key"]),
    (["search", "+space=hybrid", "space.stages=[]"], ["space.stages"]),
    (
        ["search", "+space=hybrid", "space.conv_pattern=[dense,diagonal]"],
        ["space.conv_pattern", "'diagonal'"],
    ),
    # --- search: user spaces from --config-dir
    *[
        (["search", "+space=mine", "--config-dir", f"{{in}}/conf/{folder}"], fragments)
        for folder, fragments in {
            "yaml_error": ["YAML syntax error", "line 5", "conf/yaml_error/space/mine.yaml"],
            "misspelt_key": ["unknown key", "atention", "conf/misspelt_key/space/mine.yaml"],
            "unknown_op": ["space.attention", "'flsh'", "conf/unknown_op/space/mine.yaml"],
            "bad_pattern": ["space.mlp_pattern", "'3:4'", "conf/bad_pattern/space/mine.yaml"],
            "bad_level": ["space.mlp_sparsity", "conf/bad_level/space/mine.yaml"],
            "unquoted_nm": ["space.conv_pattern", '"2:4"', "conf/unquoted_nm/space/mine.yaml"],
            "hybrid_key": ["space.stages[1]", "unknown key 'conv_block'", "conf/hybrid_key/space/mine.yaml"],
            "hybrid_op": ["space.attention", "'sparse'", "conf/hybrid_op/space/mine.yaml"],
            "hybrid_level": ["space.conv_sparsity", "conf/hybrid_level/space/mine.yaml"],
            "bad_target": ["space._target_", "NoSuchSpace"],
            "not_a_mapping": ["space", "conf/not_a_mapping/space/mine.yaml"],
            "patch": ["space.patch_size", "does not divide", "conf/patch/space/mine.yaml"],
            "depth_range": ["space.depth", "conf/depth_range/space/mine.yaml"],
            "wrong_type": ["space.head_dim", "conf/wrong_type/space/mine.yaml"],
        }.items()
    ],
    # --- search: top-level keys (types, ranges, unknown keys with and without +)
    (["search", "+space=tiny", "n_trails=3"], ["unknown key 'n_trails'"]),
    (["search", "+space=tiny", "+n_trails=3"], ["unknown key 'n_trails'"]),
    (["search", "+space=tiny", "++n_trails=3"], ["unknown key 'n_trails'"]),
    (["search", "+space=tiny", "n_trials=0"], ["n_trials", ">= 1"]),
    (["search", "+space=tiny", "n_trials=-5"], ["n_trials", ">= 1"]),
    (["search", "+space=tiny", "n_trials=abc"], ["n_trials", "integer", "'abc'"]),
    (["search", "+space=tiny", "n_trials=2.5"], ["n_trials", "integer"]),
    (["search", "+space=tiny", "n_trials=true"], ["n_trials", "integer", "True"]),
    (["search", "+space=tiny", "n_trials=null"], ["n_trials", "integer"]),
    (["search", "+space=tiny", "seed=-1"], ["seed", ">= 0"]),
    (["search", "+space=tiny", "seed=abc"], ["seed", "integer"]),
    (["search", "+space=tiny", "sampler_seed=-1"], ["sampler_seed", ">= 0"]),
    (["search", "+space=tiny", "supernet.member_pool=1"], ["supernet.member_pool", "num_random"]),
    (["search", "+space=tiny", "supernet.cuda_graphs=maybe"], ["supernet.cuda_graphs"]),
    (["search", "+space=tiny", "supernet.flip=maybe"], ["supernet.flip", "true or false or one of auto"]),
    (["search", "+space=tiny", "supernet.translate=-1"], ["supernet.translate", ">= 0 or auto"]),
    (["search", "+space=tiny", "supernet.translate=far"], ["supernet.translate", "'far'"]),
    (["search", "+space=tiny", "supernet.devices=0"], ["supernet.devices", ">= 1"]),
    (["search", "+space=tiny", "supernet.devices=two"], ["supernet.devices", "integer"]),
    (["search", "+space=tiny", "supernet.devices=3"], ["supernet.batch_size", "supernet.devices=3"]),
    (["search", "+space=tiny", "supernet.devices=2", "device=cuda"], ["device"]),
    (["train", "trial=0", "trainer=tune", "trainer.max_concurrent=0"], ["trainer.max_concurrent"]),
    (["train", "trial=0", "trainer=tune", "trainer.scheduler=hyperband"], ["trainer.scheduler", "asha"]),
    (["train", "trial=0", "trainer=tune", "trainer.gpus_per_trial=1.5"], ["trainer.gpus_per_trial", "whole"]),
    (["train", "trial=0", "trainer=nope"], ["trainer", "local", "tune"]),
    (
        ["train", "trial=0", "+baselines.models.not_a_timm_model={{}}"],
        ["baselines.models", "not_a_timm_model"],
    ),
    (["train", "trial=0", "retrain.epochs=0"], ["retrain.epochs", ">= 1"]),
    (["train", "trial=0", "retrain.ema_decay=1.5"], ["retrain.ema_decay"]),
    (["train", "trial=0", "retrain.flip=sometimes"], ["retrain.flip", "auto"]),
    (["train", "trial=0", "retrain.translate=true"], ["retrain.translate", "auto"]),
    (["search", "+space=tiny", "seed=${{nope}}"], ["seed", "nope"]),
    (["search", "+space=tiny", "device=tpu"], ["device", "auto, cpu or cuda"]),
    (["search", "+space=tiny", "device=cuda:x"], ["device"]),
    (["search", "+space=tiny", "device=cuda"], ["device", "no CUDA device"]),
    (["search", "+space=tiny", "heartbeat_s=0"], ["heartbeat_s", "> 0"]),
    (["search", "+space=tiny", "heartbeat_s=soon"], ["heartbeat_s", "number"]),
    (["search", "+space=tiny", "checkpoint_every_s=-30"], ["checkpoint_every_s", ">= 0"]),
    (["search", "+space=tiny", "max_consecutive_failures=-1"], ["max_consecutive_failures", ">= 1"]),
    (["search", "+space=tiny", "max_consecutive_failures=0"], ["max_consecutive_failures", ">= 1"]),
    (["search", "+space=tiny", "progress=maybe"], ["progress", "true or false"]),
    (["search", "+space=tiny", "objectives=[accuracy,accuracy]"], ["objectives", "distinct"]),
    (["search", "+space=tiny", "objectives=[acc,latency]"], ["objectives", "'acc'", "accuracy"]),
    (["search", "+space=tiny", "objectives=[]"], ["objectives", "at least 1"]),
    (["search", "+space=tiny", "objectives=accuracy"], ["objectives", "list"]),
    (["search", "+space=tiny", "study_name="], ["study_name", "non-empty"]),
    (["search", "+space=tiny", "cache_dir={in}/notes.txt"], ["cache_dir", "notes.txt", "is a file"]),
    (["search", "+space=tiny", "cache_dir={in}/notes.txt/cache"], ["cache_dir", "notes.txt", "is a file"]),
    # --- search: storage
    (["search", "+space=tiny", "storage=nosuchdb://x"], ["storage", "nosuchdb://x"]),
    (["search", "+space=tiny", "storage=not a url"], ["storage", "'not a url'"]),
    (["search", "+space=tiny", "storage=sqlite:///no/such/dir/x.db"], ["storage", "does not exist"]),
    (["search", "+space=tiny", "storage=sqlite:///{in}/empty_dir"], ["storage", "empty_dir", "not a file"]),
    (["search", "+space=tiny", "storage=sqlite:///{in}/notes.txt/x.db"], ["storage", "notes.txt"]),
    (["search", "+space=tiny", "storage=sqlite:///{in}/corrupt.db"], ["storage", "corrupt.db"]),
    # --- search: the supernet recipe
    (["search", "+space=tiny", "supernet=fast"], ["unknown supernet 'fast'", "default"]),
    (["search", "+space=tiny", "supernet.lr=fast"], ["supernet.lr", "number", "'fast'"]),
    (["search", "+space=tiny", "supernet.lr=0"], ["supernet.lr", "> 0"]),
    (["search", "+space=tiny", "supernet.batch_size=0"], ["supernet.batch_size", ">= 1"]),
    (["search", "+space=tiny", "supernet.epochs=-1"], ["supernet.epochs", ">= 1"]),
    (["search", "+space=tiny", "supernet.epochs=1.5"], ["supernet.epochs", "integer"]),
    (["search", "+space=tiny", "supernet.num_random=-1"], ["supernet.num_random", ">= 0"]),
    (["search", "+space=tiny", "supernet.label_smoothing=1.5"], ["supernet.label_smoothing"]),
    (["search", "+space=tiny", "supernet.weight_decay=-0.1"], ["supernet.weight_decay", ">= 0"]),
    (["search", "+space=tiny", "supernet.warmup_epochs=100"], ["supernet.warmup_epochs", "epochs"]),
    (["search", "+space=tiny", "supernet.distill=perhaps"], ["supernet.distill", "true or false"]),
    (["search", "+space=tiny", "+supernet.momentum=0.9"], ["supernet.momentum", "unknown key", "lr"]),
    # --- search: data
    (
        ["search", "+space=tiny", "dataset=imagenet"],
        ["unknown dataset 'imagenet'", "cifar10", "fashion_mnist"],
    ),
    (["search", "+space=tiny", "dataset.val_fraction=1.5"], ["dataset.val_fraction", "(0, 1)"]),
    (["search", "+space=tiny", "dataset.val_fraction=0"], ["dataset.val_fraction", "(0, 1)"]),
    (["search", "+space=tiny", "dataset.val_fraction=half"], ["dataset.val_fraction", "number"]),
    (["search", "+space=tiny", "dataset.flip_safe=perhaps"], ["dataset.flip_safe", "true or false or null"]),
    (["search", "+space=hybrid", "space.stem=[conv,resnet]"], ["space.stem", "'resnet'", "hybrid.yaml"]),
    (["search", "+space=hybrid", "+space.stem_pool=[sometimes]"], ["space.stem_pool"]),
    (["search", "+space=hybrid_gpu", "space.min_stages=9"], ["space.min_stages", "[1, 4]"]),
    (["search", "+space=hybrid", "space.res_ratio=[0]"], ["space.res_ratio"]),
    (["search", "+space=vit", "space.stem=[patch,convs]"], ["space.stem", "'convs'", "vit.yaml"]),
    (["search", "+space=tiny", "+dataset.shuffle=true"], ["dataset.shuffle", "unknown key"]),
    (
        ["search", "+space=tiny", "dataset=fashion_mnist", "dataset.root={cwd}/nowhere"],
        ["dataset.root", "nowhere"],
    ),
    (
        ["search", "+space=tiny", "dataset=fashion_mnist", "dataset.root={in}/fmnist_truncated"],
        ["dataset.root", "fmnist_truncated"],
    ),
    (
        ["search", "+space=tiny", "dataset=cifar10", "dataset.root={in}/empty_dir"],
        ["dataset.root", "cifar10"],
    ),
    (["search", "+space=tiny", "dataset=imagefolder"], ["dataset.root", "no value given"]),
    (
        ["search", "+space=tiny", "dataset=imagefolder", "dataset.root={cwd}/nowhere"],
        ["dataset.root", "nowhere"],
    ),
    (
        ["search", "+space=tiny", "dataset=imagefolder", "dataset.root={in}/images_corrupt"],
        ["dataset.root", "broken.png"],
    ),
    (
        ["search", "+space=tiny", "dataset=imagefolder", "dataset.root={in}/images_no_classes"],
        ["dataset.root", "images_no_classes"],
    ),
    (
        ["search", "+space=tiny", "dataset=imagefolder", "dataset.root={in}", "dataset.image_size=0"],
        ["image_size"],
    ),
    (
        ["search", "+space=tiny", "dataset=imagefolder", "dataset.root={in}", "dataset.grayscale=sometimes"],
        ["dataset.grayscale", "true or false"],
    ),
    # --- search: sampler
    (["search", "+space=tiny", "sampler=annealing"], ["unknown sampler 'annealing'", "nsga2, random, tpe"]),
    (["search", "+space=tiny", "sampler=tpe", "sampler.n_startup_trials=abc"], ["sampler.n_startup_trials"]),
    (["search", "+space=tiny", "sampler=tpe", "sampler.multivariate=sometimes"], ["sampler.multivariate"]),
    (["search", "+space=tiny", "sampler=tpe", "+sampler.n_startup=5"], ["sampler.n_startup", "unknown key"]),
    (["search", "+space=tiny", "sampler=nsga2", "sampler.population_size=1"], ["sampler", "population_size"]),
    (["search", "+space=tiny", "sampler._target_=optuna.samplers.NoSuch"], ["sampler._target_", "NoSuch"]),
    # --- search: profiler
    (["search", "+space=tiny", "profiler=stopwatch"], ["unknown profiler 'stopwatch'", "flops, onnxruntime"]),
    (["search", "+space=tiny", "profiler.name=stopwatch"], ["profiler", "stopwatch", "valid: flops"]),
    (["search", "+space=tiny", "profiler=plugin"], ["profiler.name", "no value given"]),
    (
        ["search", "+space=tiny", "profiler._target_=collections.OrderedDict"],
        ["profiler", "not a latency profiler"],
    ),
    (["search", "+space=tiny", "profiler.threads=0"], ["profiler", "threads"]),
    (["search", "+space=tiny", "profiler.threads=many"], ["profiler.threads", "integer"]),
    (["search", "+space=tiny", "profiler.runs=0"], ["profiler", "runs"]),
    (["search", "+space=tiny", "profiler.image_size=30"], ["profiler.image_size", "30", "does not divide"]),
    (["search", "+space=tiny", "profiler.image_size=-28"], ["profiler.image_size"]),
    (
        ["search", "+space=tiny", "profiler.providers=[NoSuchExecutionProvider]"],
        ["profiler.providers", "available"],
    ),
    (["search", "+space=tiny", "profiler.providers=CPUExecutionProvider"], ["profiler.providers", "list"]),
    (["search", "+space=tiny", "+profiler.turbo=true"], ["profiler.turbo", "unknown key", "threads"]),
    (["search", "+space=tiny", "profiler=torch", "profiler.device=cuda"], ["profiler", "cuda"]),
    (["search", "+space=tiny", "profiler=torch", "profiler.device=cpu", "profiler.dtype=float8"], ["dtype"]),
    (["search", "+space=tiny", "profiler=flops", "profiler.metric=watts"], ["profiler", "metric", "watts"]),
    (
        ["search", "+space=tiny", "profiler=predictor", "cache_dir={cwd}/c"],
        ["profiler.path", "nas latency fit"],
    ),
    (["search", "+space=tiny", "profiler=predictor", "profiler.path={cwd}/none.json"], ["none.json"]),
    (
        ["search", "+space=tiny", "profiler=predictor", "profiler.path={in}/predictor.json"],
        ["predictor.json"],
    ),
    # --- search: executor
    (["search", "+space=tiny", "executor=kubernetes"], ["unknown executor 'kubernetes'", "local, ray"]),
    (["search", "+space=tiny", "executor.n_workers=0"], ["executor.n_workers"]),
    (["search", "+space=tiny", "executor.n_workers=two"], ["executor.n_workers", "integer"]),
    (["search", "+space=tiny", "executor.threads_per_worker=0"], ["executor.threads_per_worker"]),
    (["search", "+space=tiny", "executor=ray", "executor.cpus_per_worker=-1"], ["executor.cpus_per_worker"]),
    # --- export
    (["export", "trial=0"], ["storage", "no database", "nas.db"]),
    (["export", "trial=999", DB], ["trial", "999"]),
    (["export", "trial=-1", DB], ["trial", ">= 0"]),
    (["export", "trial=abc", DB], ["trial", "integer"]),
    (["export", "trial=1.5", DB], ["trial", "integer"]),
    (["export", DB], ["trial=N", "latency_budget_ms"]),
    (["export", "trial=0", "latency_budget_ms=1", DB], ["exactly one", "trial", "latency_budget_ms"]),
    (["export", "latency_budget_ms=fast", DB], ["latency_budget_ms", "number"]),
    (["export", "latency_budget_ms=-1", DB], ["latency_budget_ms", "> 0"]),
    (["export", "latency_budget_ms=0", DB], ["latency_budget_ms", "> 0"]),
    (["export", "latency_budget_ms=1e-9", DB], ["latency_budget_ms", "no trial is within", "fastest"]),
    (["export", "latency_budget_ms=inf", DB], ["latency_budget_ms"]),
    (["export", "trial=0", "out_dir=.", DB], ["out_dir", "working directory"]),
    (["export", "trial=0", "out_dir=..", DB], ["out_dir", "ancestor of the working directory"]),
    (["export", "trial=0", "out_dir=/", DB], ["out_dir", "ancestor of the working directory"]),
    (["export", "trial=0", "out_dir={study}", DB], ["out_dir", "holds the", "nas.db"]),
    (
        ["export", "trial=0", "out_dir={study}/.nas_cache", DB, "cache_dir={study}/.nas_cache"],
        ["out_dir", "cache"],
    ),
    (["export", "trial=0", "out_dir={in}/user_folder", DB], ["out_dir", "NOTES.txt", "not a nas export"]),
    (
        ["export", "trial=0", "out_dir={in}/user_folder", "overwrite=true", DB],
        ["out_dir", "not a nas export"],
    ),
    (["export", "trial=0", "out_dir={in}/notes.txt", DB], ["out_dir", "is a file"]),
    (["export", "trial=0", "out_dir={in}/notes.txt/model", DB], ["out_dir", "notes.txt"]),
    (["export", "trial=0", "out_dir={in}/link", DB], ["out_dir", "symbolic link"]),
    (
        ["export", "trial=0", "out_dir={in}/previous_export", DB],
        ["out_dir", "previous export", "overwrite=true"],
    ),
    (
        ["export", "trial=0", "out_dir={in}/previous_export_plus", "overwrite=true", DB],
        ["out_dir", "NOTES.txt", "not a nas export"],
    ),
    (["export", "trial=0", "overwrite=maybe", DB], ["overwrite", "true or false"]),
    (["export", "trial=0", "study_name=nosuch", DB], ["study_name", "nosuch"]),
    (["export", "trial=0", "storage=sqlite:///{in}/corrupt.db"], ["storage", "corrupt.db"]),
    (["export", "trial=0", "storage=sqlite:///{in}/empty.db"], ["storage", "empty.db", "no nas study"]),
    (["export", "trial=0", "storage=sqlite:///{in}/foreign.db"], ["storage", "foreign.db", "no nas study"]),
    (["export", "trial=0", "storage=nonsense://x"], ["storage", "nonsense://x"]),
    (["export", "trial=0", "+out=here", DB], ["unknown key 'out'"]),
    # --- profile
    (["profile"], ["arch", "trial=N"]),
    (["profile", "arch={cwd}/missing.yaml"], ["arch", "missing.yaml", "does not exist"]),
    (["profile", "arch={in}/broken.yaml"], ["arch", "broken.yaml"]),
    (["profile", "arch={in}/list.yaml"], ["arch", "list.yaml"]),
    (["profile", "arch={in}/notarch.yaml"], ["arch", "notarch.yaml"]),
    (["profile", "arch={in}/arch.yaml", "trial=0", DB], ["arch", "not both"]),
    (["profile", "trial=999", DB], ["trial", "999"]),
    (["profile", "trial=0"], ["storage", "no database"]),
    (["profile", "arch={in}/arch.yaml", "profiler=stopwatch"], ["unknown profiler 'stopwatch'"]),
    (["profile", "arch={in}/arch.yaml", "profiler.image_size=30"], ["profiler.image_size", "30"]),
    (["profile", "arch={in}/arch.yaml", "profiler.runs=0"], ["profiler", "runs"]),
    (["profile", "arch={in}/arch.yaml", "profiler=torch", "profiler.device=cuda"], ["profiler", "cuda"]),
    # --- dashboard
    (["dashboard", "port=abc", DB], ["port", "integer", "'abc'"]),
    (["dashboard", "port=99999", DB], ["port", "<= 65535"]),
    (["dashboard", "port=0", DB], ["port", ">= 1"]),
    (["dashboard", "host=no.such.host.invalid", DB], ["host", "no.such.host.invalid"]),
    (["dashboard", "host=", DB], ["host"]),
    (["dashboard", "storage=nonsense://x"], ["storage", "nonsense://x"]),
    (["dashboard", "storage=sqlite:///{cwd}/none.db"], ["storage", "none.db", "no database"]),
    (["dashboard", "storage=sqlite:///{in}/corrupt.db"], ["storage", "corrupt.db"]),
    (["dashboard", "storage=sqlite:///{in}/foreign.db"], ["storage", "no nas study"]),
    (["dashboard", "study_name=nosuch", DB], ["study_name", "nosuch"]),
    # --- spaces
    (
        ["spaces", "--config-dir", "{in}/conf/yaml_error"],
        ["YAML syntax error", "conf/yaml_error/space/mine.yaml"],
    ),
    (
        ["spaces", "--config-dir", "{in}/conf/unknown_op"],
        ["space.attention", "conf/unknown_op/space/mine.yaml"],
    ),
    (["spaces", "dataset=imagenet"], ["unknown dataset 'imagenet'"]),
    (["spaces", "dataset=fashion_mnist", "dataset.root={cwd}/nowhere"], ["dataset.root", "nowhere"]),
    # --- latency fit / eval
    (["latency", "fit"], ["space", "+space=NAME"]),
    (["latency", "fit", "+space=tiny", "n_samples=1"], ["n_samples", ">= 2"]),
    (["latency", "fit", "+space=tiny", "n_samples=abc"], ["n_samples", "integer"]),
    (["latency", "fit", "+space=tiny", "profiler=flops"], ["profiler", "does not measure time"]),
    (["latency", "fit", "+space=tiny", "storage=sqlite:///no/such/dir/x.db"], ["storage", "does not exist"]),
    (["latency", "fit", "+space=tiny", "predictor={in}/notes.txt/p.json"], ["predictor", "notes.txt"]),
    (["latency", "fit", "+space=tiny", "profiler=torch", "profiler.device=cuda"], ["profiler", "cuda"]),
    (["latency", "eval", "+space=tiny", "cache_dir={cwd}/c"], ["profiler.path", "nas latency fit"]),
    (["latency", "eval", "+space=tiny", "predictor={cwd}/missing.json"], ["predictor", "missing.json"]),
    (["latency", "eval", "+space=tiny", "predictor={in}/predictor.json"], ["predictor"]),
]


def _id(case) -> str:
    words, _ = case
    return " ".join(words)[:90]


def test_the_suite_is_large_and_distinct():
    assert len(CASES) >= 100
    assert len({tuple(words) for words, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("words, fragments", CASES, ids=[_id(c) for c in CASES])
def test_bad_input(words, fragments, tmp_path, inputs, tiny_study):
    values = {"cwd": tmp_path, "in": inputs, "study": tiny_study}
    args = [w.format(**values) for w in words]
    before = snapshot(tmp_path, inputs, tiny_study)
    code, out, err = run_in_process(*args, cwd=tmp_path)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}\n{out}\n{err}"
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment.format(**values) in lines[0], lines[0]
    assert snapshot(tmp_path, inputs, tiny_study) == before, "something was written"


def test_a_port_in_use(tmp_path, tiny_study):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        code, _, err = run_in_process("dashboard", f"port={port}", DB.format(study=tiny_study), cwd=tmp_path)
    assert code == 2 and err.count("\n") == 1 and "port" in err and str(port) in err, err


def test_a_gzipped_fashion_mnist_is_read_without_writing(tmp_path, shared_data):
    """Only the published .gz files (../shared/data is a read-only mirror of them): they are
    extracted to a temporary folder and read; the working directory stays empty."""
    assert not list((shared_data / "FashionMNIST" / "raw").glob("*-ubyte"))
    code, out, err = run_in_process(
        "spaces", "dataset=fashion_mnist", f"dataset.root={shared_data}", cwd=tmp_path
    )
    assert code == 0, err
    assert "1x28x28" in out
    assert list(tmp_path.iterdir()) == []

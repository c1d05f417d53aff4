"""Bad input: one line naming the key, exit code 2, no traceback, nothing written."""

import pytest

from tests.conftest import run_nas


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["+space=hexagon"], ["unknown space 'hexagon'", "valid: hybrid, tiny, vit"]),
        (["+space=tiny", "sampler=annealing"], ["unknown sampler", "nsga2, random, tpe"]),
        (["+space=tiny", "dataset=imagenet"], ["unknown dataset", "cifar10", "embedded", "fashion_mnist"]),
        (["+space=tiny", "profiler=stopwatch"], ["unknown profiler", "flops, onnxruntime"]),
        (["+space=tiny", "profiler.name=stopwatch"], ["profiler", "stopwatch", "valid: flops, onnxruntime"]),
        (["+space=tiny", "n_trails=3"], ["unknown key 'n_trails'"]),
        (["+space=tiny", "n_trials=0"], ["n_trials"]),
        (["+space=tiny", "space.patch_size=[5]"], ["space.patch_size", "does not divide"]),
        (["+space=tiny", "space.attention=[softmax,flash]"], ["space.attention", "'flash'"]),
        (["+space=tiny", "storage=nosuchdb://x"], ["storage"]),
        (["+space=tiny", "storage=sqlite:///no/such/dir/x.db"], ["storage", "does not exist"]),
        (["space=tiny"], ["+space=NAME"]),
        (["+space=tiny", "device=tpu"], ["device"]),
        (
            ["+space=tiny", "profiler.providers=[NoSuchExecutionProvider]"],
            ["profiler.providers", "available"],
        ),
        ([], ["space", "+space=NAME", "tiny, vit"]),
    ],
)
def test_bad_search_input(tmp_path, args, fragments):
    result = run_nas("search", *args, cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []  # no database, no cache, nothing half-written


def test_missing_dataset_root_names_the_path(tmp_path):
    result = run_nas("search", "+space=tiny", "dataset=fashion_mnist", "dataset.root=nowhere", cwd=tmp_path)
    assert_one_line_error(result, "dataset.root", str(tmp_path / "nowhere"), "download")
    assert not (tmp_path / "nas.db").exists()


def test_imagefolder_without_root(tmp_path):
    result = run_nas("search", "+space=tiny", "dataset=imagefolder", cwd=tmp_path)
    assert_one_line_error(result, "dataset.root")


def test_unknown_command_and_help(tmp_path):
    assert_one_line_error(run_nas("serch", cwd=tmp_path), "unknown command 'serch'", "search")
    result = run_nas("--help", cwd=tmp_path)
    assert result.returncode == 0 and "nas search +space=vit" in result.stdout


def test_export_without_study(tmp_path):
    result = run_nas("export", "trial=0", cwd=tmp_path)
    assert_one_line_error(result, "study_name", "0 studies")


def test_spaces_lists_axes_and_sizes(tmp_path):
    result = run_nas("spaces", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for fragment in (
        "vit",
        "tiny",
        "576",
        "layer<i>.attention",
        "'sqa'",
        "patch_size",
        "width vs depth",
        "p4 d96 L1 [4h/4x/sm] gelu: 106,954 params",
        "108,298 params",  # six layers of d48 at a comparable size
        "hybrid",
        "stage0 (14x14)",
        "stage2 (4x4)",
        "conv<j>.conv_pattern",
        "attn<j>.mlp_pattern",
    ):
        assert fragment in result.stdout


@pytest.mark.parametrize(
    "line, fragments",
    [
        ("attention: [softmax, flsh]", ["space.attention", "'flsh'"]),
        ("mlp_pattern: [dense, '3:4']", ["space.mlp_pattern", "'3:4'"]),
        ("mlp_sparsity: [0.5, 1.5]", ["space.mlp_sparsity"]),
        ("atention: [softmax]", ["unknown key", "atention"]),
    ],
)
def test_misspelt_user_space_names_file_and_key(tmp_path, line, fragments):
    lines = [
        "_target_: search_spaces.vit.VitSpace",
        "name: mine",
        "patch_size: [7]",
        "embed_dim: [16]",
        "depth: [1, 2]",
        "head_dim: 8",
        "num_heads: [1]",
        "mlp_ratio: [1]",
        "attention: [softmax]",
        "activation: [relu]",
    ]
    key = line.split(":")[0]
    lines = [x for x in lines if not x.startswith(key + ":")] + [line]
    (tmp_path / "myconf" / "space").mkdir(parents=True)
    path = tmp_path / "myconf" / "space" / "mine.yaml"
    path.write_text("\n".join(lines) + "\n")
    result = run_nas("search", "+space=mine", "--config-dir", "myconf", cwd=tmp_path)
    assert_one_line_error(result, *fragments, str(path))
    assert not (tmp_path / "nas.db").exists()


HYBRID_USER_SPACE = """\
_target_: search_spaces.hybrid.HybridSpace
name: myhybrid
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


@pytest.mark.parametrize(
    "old, new, fragments",
    [
        ("conv_blocks: [0, 1]", "conv_block: [0, 1]", ["space.stages[1]", "unknown key 'conv_block'"]),
        ("attention: [softmax]", "attention: [softmax, sparse]", ["space.attention", "'sparse'"]),
        ("expansion: [2]", "expansion: [2]\nconv_pattern: [dense, 2:4]", ["space.conv_pattern", '"2:4"']),
        ("expansion: [2]", "expansion: [2]\nconv_sparsity: [0.5, 2]", ["space.conv_sparsity"]),
    ],
)
def test_misspelt_user_hybrid_space_names_file_and_key(tmp_path, old, new, fragments):
    (tmp_path / "myconf" / "space").mkdir(parents=True)
    path = tmp_path / "myconf" / "space" / "myhybrid.yaml"
    assert old in HYBRID_USER_SPACE
    path.write_text(HYBRID_USER_SPACE.replace(old, new))
    result = run_nas("search", "+space=myhybrid", "--config-dir", "myconf", cwd=tmp_path)
    assert_one_line_error(result, *fragments, str(path))
    assert not (tmp_path / "nas.db").exists()

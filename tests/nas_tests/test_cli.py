"""The real ``nas`` process: exit codes, one stderr line and no traceback across the process
boundary (the many bad inputs themselves are checked in-process: test_bad_input.py)."""

import pytest

from tests.conftest import run_in_process, run_nas


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
        (["+space=tiny", "+n_trails=3"], ["unknown key 'n_trails'"]),
        (["+space=tiny", "supernet.lr=fast"], ["supernet.lr", "number", "'fast'"]),
        (["+space=tiny", "profiler.image_size=30"], ["profiler.image_size", "does not divide"]),
        ([], ["space", "+space=NAME", "tiny, vit"]),
    ],
)
def test_bad_search_input_in_a_real_process(tmp_path, args, fragments):
    result = run_nas("search", *args, cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []  # no database, no cache, nothing half-written


def test_a_broken_user_space_in_a_real_process(tmp_path):
    (tmp_path / "myconf" / "space").mkdir(parents=True)
    path = tmp_path / "myconf" / "space" / "mine.yaml"
    path.write_text("_target_: search_spaces.vit.VitSpace\nname: mine\npatch_size: [7\n")
    before = sorted(tmp_path.rglob("*"))
    result = run_nas("search", "+space=mine", "--config-dir", "myconf", cwd=tmp_path)
    assert_one_line_error(result, str(path), "YAML syntax error", "line 3")
    assert sorted(tmp_path.rglob("*")) == before


def test_a_user_space_naming_a_missing_class_is_one_line(tmp_path):
    """Hydra logs three lines of its own for a ``_target_`` it cannot import: only ours shows."""
    (tmp_path / "myconf" / "space").mkdir(parents=True)
    path = tmp_path / "myconf" / "space" / "mine.yaml"
    path.write_text("_target_: search_spaces.vit.NoSuchSpace\nname: mine\n")
    result = run_nas("search", "+space=mine", "--config-dir", "myconf", cwd=tmp_path)
    assert_one_line_error(result, "space._target_", "NoSuchSpace", str(path))
    assert "Error getting object" not in result.stderr


def test_unknown_command_and_help(tmp_path):
    assert_one_line_error(run_nas("serch", cwd=tmp_path), "unknown command 'serch'", "search")
    result = run_nas("--help", cwd=tmp_path)
    assert result.returncode == 0 and "nas search +space=vit" in result.stdout


def test_spaces_lists_axes_and_sizes(tmp_path):
    code, out, err = run_in_process("spaces", cwd=tmp_path)
    assert code == 0, err
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
        assert fragment in out, fragment
    assert list(tmp_path.iterdir()) == []

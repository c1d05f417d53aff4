"""``nas export`` never loses a file: it refuses folders holding anything but a previous export,
the working directory and the study's own folders, replaces a previous export only when asked,
and an interrupted export leaves no partial folder."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tests.conftest import REPO, run_in_process


@pytest.fixture
def study_copy(tmp_path, tiny_study) -> Path:
    """A working directory holding a copy of the tiny study, its cache and a user's files."""
    work = tmp_path / "work"
    shutil.copytree(tiny_study, work, symlinks=True)
    (work / "NOTES.txt").write_text("the user's notes\n")
    (work / "mymodel").mkdir()
    (work / "mymodel" / "NOTES.txt").write_text("notes on my model\n")
    return work


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def export(work: Path, *args: str) -> tuple[int, str]:
    code, out, err = run_in_process("export", *args, cwd=work)
    return code, out + err


def test_user_files_the_study_and_the_working_directory_always_survive(study_copy):
    work = study_copy
    before = files(work)
    for out_dir in ("mymodel", ".", "..", str(work), ".nas_cache"):
        code, said = export(work, "trial=0", f"out_dir={out_dir}")
        assert code == 2 and "out_dir" in said, said
        code, said = export(work, "trial=0", f"out_dir={out_dir}", "overwrite=true")
        assert code == 2 and "out_dir" in said, said
    assert files(work) == before
    # the database in a folder of its own, exported into from elsewhere
    (work / "studies").mkdir()
    (work / "nas.db").rename(work / "studies" / "nas.db")
    code, said = export(
        work, "trial=0", "out_dir=studies", "storage=sqlite:///studies/nas.db", "overwrite=true"
    )
    assert code == 2 and "study database" in said, said
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{work}/studies/nas.db")
    assert len(study.trials) == 4


def test_a_previous_export_is_replaced_only_with_overwrite(study_copy):
    work = study_copy
    code, said = export(work, "trial=0", "out_dir=models/best")
    assert code == 0, said
    first = files(work / "models" / "best")
    assert set(first) == {"model.onnx", "arch.yaml", "model.pt", "export.json"}
    assert json.loads(first["export.json"])["trial"] == 0

    code, said = export(work, "trial=1", "out_dir=models/best")
    assert code == 2 and "previous export" in said and "overwrite=true" in said, said
    assert files(work / "models" / "best") == first

    code, said = export(work, "trial=1", "out_dir=models/best", "overwrite=true")
    assert code == 0, said
    second = files(work / "models" / "best")
    assert json.loads(second["export.json"])["trial"] == 1 and second["model.onnx"] != first["model.onnx"]

    (work / "models" / "best" / "README.md").write_text("deployed on 1 Dec\n")
    code, said = export(work, "trial=0", "out_dir=models/best", "overwrite=true")
    assert code == 2 and "README.md" in said, said
    assert (work / "models" / "best" / "README.md").read_text() == "deployed on 1 Dec\n"
    assert sorted(p.name for p in (work / "models").iterdir()) == ["best"]  # no side folders left


def test_an_empty_folder_is_used(study_copy):
    (study_copy / "empty").mkdir()
    code, said = export(study_copy, "trial=0", "out_dir=empty")
    assert code == 0, said
    assert (study_copy / "empty" / "model.onnx").is_file()


def _interrupt_while_writing(work: Path, target: Path, sig: int) -> subprocess.Popen:
    """Start ``nas export`` into ``target`` and send ``sig`` once its hidden staging folder
    (``.<name>.nas-new-<pid>``) exists."""
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas", "export", "trial=0", f"out_dir={target.name}", "overwrite=true"],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    staging = work / f".{target.name}.nas-new-{proc.pid}"
    deadline = time.monotonic() + 120
    while not staging.exists():
        assert proc.poll() is None, f"export ended before it was interrupted: {proc.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_an_interrupted_export_leaves_no_partial_folder(study_copy, sig):
    work = study_copy
    target = work / "model"
    proc = _interrupt_while_writing(work, target, sig)
    assert not target.exists()
    leftovers = [p.name for p in work.iterdir() if ".nas-" in p.name]
    if sig == signal.SIGTERM:  # cleaned up at once, exit code of an interrupt
        assert proc.returncode == 130 and leftovers == [], (proc.returncode, leftovers)
    else:  # a killed process cleans nothing: the next export to the same place does
        assert leftovers == [f".model.nas-new-{proc.pid}"]
    code, said = export(work, "trial=0", "out_dir=model")
    assert code == 0, said
    assert set(files(target)) == {"model.onnx", "arch.yaml", "model.pt", "export.json"}
    assert [p.name for p in work.iterdir() if ".nas-" in p.name] == []


def test_an_interrupted_overwrite_keeps_the_previous_export(study_copy):
    work = study_copy
    target = work / "model"
    code, said = export(work, "trial=1", "out_dir=model")
    assert code == 0, said
    previous = files(target)
    _interrupt_while_writing(work, target, signal.SIGKILL)
    assert files(target) == previous

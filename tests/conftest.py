"""Shared fixtures. Tests read real data from ../shared/data and never download."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NAS_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_configure(config):
    """Under pytest-xdist (``make test``: ``-n 2``), each worker is a machine of its own: it runs
    on its own share of the cores (pinned before torch starts its thread pools, so a worker's
    torch, ONNX Runtime and child processes use that share alone) and has its own measurement
    lock folder. So one worker's training never lands on the core where the other's profiler
    measures (a figure measured under load is retried and then flagged, never kept), and one
    worker's measurement does not stop the other's searches. Tests of the lock itself use
    folders of their own; tests that need the whole machine run in ``make test``'s second,
    serial pass (marker ``whole_machine``)."""
    config.addinivalue_line(
        "markers", "whole_machine: needs every core of the machine (run after the parallel pass)"
    )
    worker = getattr(config, "workerinput", None)
    if worker is None or not hasattr(os, "sched_setaffinity"):
        return
    index, count = int(worker["workerid"].removeprefix("gw")), int(worker["workercount"])
    cores = sorted(os.sched_getaffinity(0))
    if count <= len(cores):
        share = set(cores[index * len(cores) // count : (index + 1) * len(cores) // count])
        for thread in os.listdir("/proc/self/task"):  # execnet's threads too, not just this one
            try:
                os.sched_setaffinity(int(thread), share)
            except OSError:
                pass
    import tempfile

    base = os.environ.get("NAS_LOCK_DIR") or str(Path(tempfile.gettempdir()) / "nas-locks")
    os.environ["NAS_LOCK_DIR"] = f"{base}-{worker['testrunuid'][:8]}-{worker['workerid']}"


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A command run in this process may set torch's thread count for itself (a worker's
    ``threads``): the next test starts with the count the process had."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    yield
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


# Test files all of whose tests need the whole machine: they pin work to given cores, keep
# cores busy on purpose or compare figures measured on two cores; or they start several
# processes that each want a core of their own (a Ray cluster and its job, torchrun's ranks),
# which on one worker's share of a small machine take twice as long.
WHOLE_MACHINE_FILES = (
    "latency_models_tests/test_quiet.py",
    "web_tests/test_ray_jobs.py",
    "nas_tests/test_distributed.py",
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    in_worker = hasattr(config, "workerinput")
    for item in items:
        if any(item.nodeid.startswith(f"tests/{f}::") for f in WHOLE_MACHINE_FILES):
            item.add_marker(pytest.mark.whole_machine)
        if in_worker and item.get_closest_marker("whole_machine"):
            item.add_marker(
                pytest.mark.skip(reason="needs the whole machine: make test runs it in its serial pass")
            )


TINY = dict(
    name="tiny",
    image_size=28,
    in_channels=1,
    num_classes=10,
    patch_size=[7, 14],
    embed_dim=[16, 24],
    depth=[1, 2],
    head_dim=8,
    num_heads=[1, 2],
    mlp_ratio=[1, 2],
    attention=["linear", "softmax"],
    activation=["relu", "gelu"],
)
VIT = dict(
    name="vit",
    image_size=28,
    in_channels=1,
    num_classes=10,
    patch_size=[4, 7],
    embed_dim=[48, 64, 96],
    depth=[1, 4],
    head_dim=16,
    num_heads=[1, 2, 4],
    mlp_ratio=[1, 2, 4],
    attention=["linear", "softmax"],
    activation=["relu", "gelu"],
)

# A small hybrid space with every conv pattern and several attention kinds.
HYBRID = dict(
    name="hybrid_test",
    image_size=28,
    in_channels=1,
    num_classes=10,
    stages=[
        {"width": [8, 16], "conv_blocks": [1, 2], "attention_blocks": [0, 0]},
        {"width": [16, 24], "conv_blocks": [0, 1], "attention_blocks": [0, 1]},
        {"width": [24, 32], "conv_blocks": [0, 1], "attention_blocks": [1, 2]},
    ],
    expansion=[1, 2],
    head_dim=8,
    num_heads=[1, 2],
    mlp_ratio=[1, 2],
    attention=["pool", "linear", "slab", "local", "sqa", "softmax"],
    activation=["relu", "gelu"],
    conv_pattern=["dense", "unstructured", "2:4", "4:8", "block", "structured"],
    conv_sparsity=[0.5, 0.75],
    mlp_pattern=["dense", "2:4", "structured"],
    mlp_sparsity=[0.5],
)


@pytest.fixture
def hybrid_space():
    from search_spaces.hybrid import HybridSpace

    return HybridSpace(**HYBRID)


@pytest.fixture
def tiny_space():
    from search_spaces.vit import VitSpace

    return VitSpace(**TINY)


@pytest.fixture
def vit_space():
    from search_spaces.vit import VitSpace

    return VitSpace(**VIT)


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "FashionMNIST" / "raw").is_dir():
        pytest.skip(f"Fashion-MNIST not found under {SHARED_DATA}")
    return SHARED_DATA


def assert_extracts_and_exports(supernet, arch, images) -> None:
    """The extracted module equals the supernet's member (in eval mode: BatchNorm members use
    their statistics), and ONNX Runtime agrees with torch."""
    import numpy as np
    import torch

    from latency_models.onnx_io import to_onnx
    from latency_models.onnxruntime import OnnxRuntimeProfiler

    model = supernet.extract(arch)
    training = supernet.training
    with torch.no_grad():
        expected = model(images)
        torch.testing.assert_close(supernet.eval()(images, arch), expected, rtol=0, atol=1e-5)
    supernet.train(training)
    session = OnnxRuntimeProfiler().session(to_onnx(model, arch.input_shape))
    (got,) = session.run(None, {"images": images.numpy()})
    assert np.abs(got - expected.numpy()).max() < 1e-4


def run_nas(
    *args: str, cwd: Path, timeout: float = 300, extra_path: Path | None = None
) -> subprocess.CompletedProcess:
    """Run the real ``nas`` command in a subprocess."""
    path = str(REPO) if extra_path is None else f"{REPO}{os.pathsep}{extra_path}"
    env = os.environ | {"PYTHONPATH": path, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "nas", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


POSTGRES = os.environ.get("NAS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database on the local server (dropped afterwards); skipped where no
    server answers at NAS_TEST_POSTGRES (default postgres@127.0.0.1:5432, trust auth)."""
    import uuid

    import sqlalchemy as sa

    from nas.study import normalise_url

    admin_url = normalise_url(POSTGRES)
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as e:  # no server, no driver, refused
        pytest.skip(f"no PostgreSQL server at {POSTGRES}: {str(e).splitlines()[0]}")
    name = f"nas_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


TINY_SEARCH = [
    "+space=tiny",
    "supernet.epochs=1",
    "profiler.runs=10",
    "profiler.warmup=2",
    "progress=false",
]


def run_in_process(*args: str, cwd: Path, extra_path: Path | None = None) -> tuple[int, str, str]:
    """``nas ARGS`` in this process (no interpreter start-up: for the many checks where no
    process boundary is under test). ``extra_path`` is importable meanwhile (what run_nas puts
    on PYTHONPATH), and the modules imported from it are forgotten afterwards. Returns (exit
    code, stdout, stderr)."""
    import contextlib
    import io

    from nas.cli import main

    out, err = io.StringIO(), io.StringIO()
    before, columns = Path.cwd(), os.environ.get("COLUMNS")
    os.chdir(cwd)
    os.environ["COLUMNS"] = "300"  # rich tables unwrapped
    if extra_path is not None:
        sys.path.insert(0, str(extra_path))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(before)
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
        if extra_path is not None:
            sys.path.remove(str(extra_path))
            root = str(Path(extra_path).resolve())
            for name, module in list(sys.modules.items()):
                if str(getattr(module, "__file__", None) or "").startswith(root):
                    del sys.modules[name]
    return code, out.getvalue(), err.getvalue()


def nas_in_process(*args: str, cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    """``run_in_process`` with ``run_nas``'s result type, for tests that check what a command
    does rather than the process around it."""
    code, out, err = run_in_process(*args, cwd=cwd, extra_path=extra_path)
    return subprocess.CompletedProcess(["nas", *args], code, out, err)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> Path:
    """A folder holding a real study of the tiny space (``nas.db``, 4 measured trials) and its
    cache; tests that use it must not change it."""
    folder = tmp_path_factory.mktemp("tiny_study")
    code, out, err = run_in_process("search", *TINY_SEARCH, "n_trials=4", cwd=folder)
    assert code == 0, out + err
    return folder

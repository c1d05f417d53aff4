"""`nas dashboard` serves optuna-dashboard on a real study database."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest

from tests.conftest import REPO, run_nas


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_serves_the_study(tmp_path):
    storage = f"sqlite:///{tmp_path}/nas.db"
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[50.0, 1.0], params={}, distributions={}))
    port = free_port()
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas", "dashboard", f"port={port}", f"storage={storage}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/studies", headers={"Accept-Encoding": "gzip"}
                )
                with urllib.request.urlopen(request, timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail(f"dashboard did not start: {proc.stdout.read().decode()[-2000:]}")
                time.sleep(0.3)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/dashboard", headers={"Accept-Encoding": "gzip"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_dashboard_refuses_an_empty_storage(tmp_path):
    result = run_nas("dashboard", f"storage=sqlite:///{tmp_path}/none.db", cwd=tmp_path)
    assert result.returncode == 2 and "holds no study" in result.stderr
    assert not (tmp_path / "none.db").exists()

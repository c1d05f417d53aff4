"""`nas dashboard` serves optuna-dashboard on a real study database."""

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest

from tests.conftest import REPO, nas_in_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_serves_the_study_with_named_objectives(tmp_path, tiny_study):
    shutil.copy(tiny_study / "nas.db", tmp_path / "nas.db")
    storage = f"sqlite:///{tmp_path}/nas.db"
    study = optuna.load_study(study_name=None, storage=storage)
    assert study.metric_names == ["accuracy", "latency"]  # set by nas search
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
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/studies/{study._study_id}", headers={"Accept-Encoding": "gzip"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            if response.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
        assert json.loads(body)["objective_names"] == ["accuracy", "latency"]  # labels of the plots
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_dashboard_refuses_an_empty_storage(tmp_path):
    result = nas_in_process("dashboard", f"storage=sqlite:///{tmp_path}/none.db", cwd=tmp_path)
    assert result.returncode == 2 and "there is no database" in result.stderr
    assert not (tmp_path / "none.db").exists()

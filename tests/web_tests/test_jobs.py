"""Jobs through the service: a search started over HTTP runs to the end, bad arguments are the
CLI's one-line errors as 422, a job can be cancelled, and a server killed with SIGKILL while a
search runs finds the job again with its true state after a restart, the study intact."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import optuna
import pytest

from tests.conftest import REPO, run_in_process

SEARCH = ["+space=tiny", "supernet.epochs=1", "profiler=flops"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(folder, port, *extra):
    """``nas serve port=PORT *extra`` in ``folder`` (its own session), once it answers."""
    server = subprocess.Popen(
        [sys.executable, "-m", "nas", "serve", f"port={port}", *extra],
        cwd=folder,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    if not answers(f"{base}/api/health", 60):
        server.kill()
        pytest.fail("the server did not start")
    return server, base


def answers(url: str, timeout: float) -> bool:
    """Whether GET ``url`` gives 200 within ``timeout`` seconds (a server starting up)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return False


@pytest.fixture
def folder(tmp_path):
    """A folder with a study database (an empty one: nas token creates the tables it needs)."""
    code, out, err = run_in_process("token", "create", "token_name=w", "scope=write", cwd=tmp_path)
    assert code == 0, out + err
    (tmp_path / "token").write_text(out.strip().splitlines()[-1])
    optuna.create_study(study_name="placeholder", storage=f"sqlite:///{tmp_path}/nas.db")
    return tmp_path


def _wait(base, headers, job_id, statuses, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = httpx.get(f"{base}/api/jobs/{job_id}", headers=headers).json()
        if job["status"] in statuses:
            return job
        time.sleep(0.5)
    pytest.fail(f"job {job_id} still {job['status']}")


def test_a_search_job_runs_bad_arguments_are_422_and_a_job_can_be_cancelled(folder):
    server, base = _serve(folder, _free_port())
    headers = {"Authorization": f"Bearer {(folder / 'token').read_text()}"}
    try:
        bad = httpx.post(
            f"{base}/api/jobs",
            json={"kind": "search", "args": [*SEARCH, "n_trials=-1"]},
            headers=headers,
            timeout=60,
        )
        assert bad.status_code == 422 and "n_trials" in bad.json()["detail"]
        theirs = httpx.post(
            f"{base}/api/jobs", json={"kind": "search", "args": ["storage=sqlite:///x.db"]}, headers=headers
        )
        assert theirs.status_code == 422

        args = [*SEARCH, "n_trials=6", "study_name=web"]
        started = httpx.post(
            f"{base}/api/jobs", json={"kind": "search", "args": args}, headers=headers, timeout=60
        )
        assert started.status_code == 201, started.text
        events = []  # live progress as server-sent events, until the job ends
        url = f"{base}/api/jobs/{started.json()['id']}/events"
        with httpx.stream("GET", url, headers=headers, timeout=300) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
        assert len(events) >= 2 and events[0]["status"] == "running"
        trials = [e["progress"] for e in events if e["progress"] and e["progress"]["phase"] == "trials"]
        done = [p["done"] for p in trials]
        assert done == sorted(done) and len(set(map(json.dumps, events))) == len(events)
        assert trials and all(p["total"] == 6 and p["study"] == "web" for p in trials)  # "N of 6"
        job = events[-1]
        assert job["status"] == "done" and job["exit_code"] == 0 and job["progress"]["done"] == 6
        assert job["owner"] == "w" and job["command"].startswith("nas search +space=tiny")
        assert job["duration_s"] > 0 and job["failure"] is None
        log = httpx.get(f"{base}/api/jobs/{job['id']}/log", headers=headers).text
        assert "Pareto front" in log

        long = httpx.post(
            f"{base}/api/jobs",
            json={"kind": "search", "args": [*SEARCH, "n_trials=400", "study_name=long"]},
            headers=headers,
            timeout=60,
        ).json()
        time.sleep(3)
        cancelled = httpx.post(f"{base}/api/jobs/{long['id']}/cancel", headers=headers).json()
        assert cancelled["status"] == "cancelled"
        final = _wait(base, headers, long["id"], ("cancelled",))
        assert final["status"] == "cancelled"
        failing = httpx.post(  # passes every check, fails when it runs: the reason is shown
            f"{base}/api/jobs",
            json={"kind": "export", "args": ["study_name=nope"]},
            headers=headers,
            timeout=60,
        ).json()
        failed = _wait(base, headers, failing["id"], ("failed",))
        assert "nope" in failed["failure"] and failed["exit_code"] == 2
        assert [j["id"] for j in httpx.get(f"{base}/api/jobs", headers=headers).json()] == [
            failing["id"],
            long["id"],
            job["id"],
        ]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


@pytest.mark.slow
def test_sigkill_of_the_server_while_a_search_runs_loses_nothing(folder):
    port = _free_port()
    server, base = _serve(folder, port)
    headers = {"Authorization": f"Bearer {(folder / 'token').read_text()}"}
    args = [*SEARCH, "n_trials=10", "study_name=survivor"]
    job = httpx.post(
        f"{base}/api/jobs", json={"kind": "search", "args": args}, headers=headers, timeout=60
    ).json()
    time.sleep(2)
    os.kill(server.pid, signal.SIGKILL)  # the server only, not the job's own session
    server.wait()
    server, base = _serve(folder, port)
    try:
        seen = httpx.get(f"{base}/api/jobs/{job['id']}", headers=headers).json()
        assert seen["status"] in ("running", "done"), seen
        finished = _wait(base, headers, job["id"], ("done", "failed"))
        assert finished["status"] == "done", httpx.get(
            f"{base}/api/jobs/{job['id']}/log", headers=headers
        ).text
        study = optuna.load_study(study_name="survivor", storage=f"sqlite:///{folder}/nas.db")
        assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 10
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)

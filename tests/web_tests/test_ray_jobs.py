"""Jobs on a Ray cluster: a job whose arguments name ``executor.address`` is submitted to that
cluster as a Ray job (a real local head with its dashboard and job server), runs to the end with
its log read back from Ray, can be cancelled through Ray, and one for a cluster that does not
answer fails at once with the reason in its log."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import optuna
import pytest

from tests.conftest import REPO
from tests.web_tests.test_jobs import SEARCH, _free_port, _serve, _wait, answers

pytest.importorskip("ray.dashboard", reason="ray[default] (the dashboard's job server) is not installed")
# One Ray at a time under pytest-xdist (make test): local clusters started by ray.init take fixed
# default ports (the dashboard agent's 52365), so the tests that start Ray share one worker.
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture
def cluster(tmp_path):
    """A one-node Ray cluster started as a user starts one (``ray start --head``), in its own
    session so that teardown stops it and nothing else; its jobs run in ``tmp_path``."""
    gcs, dashboard, agent, client = _free_port(), _free_port(), _free_port(), _free_port()
    temp = Path(tempfile.mkdtemp(prefix="nas-rj-", dir="/tmp"))  # Ray's socket paths must be short
    bin_dir = str(Path(sys.executable).parent)
    env = os.environ | {
        "RAY_AUTH_MODE": "disabled",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # the jobs' `python`
        "PYTHONPATH": str(REPO),
    }
    head = subprocess.Popen(
        [
            str(Path(bin_dir) / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={gcs}",
            f"--dashboard-port={dashboard}",
            f"--dashboard-agent-listen-port={agent}",  # not Ray's fixed defaults: another Ray may hold them
            f"--ray-client-server-port={client}",
            "--include-dashboard=true",
            "--num-cpus=2",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ],  # fmt: skip
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{dashboard}"
    if not answers(f"{url}/api/version", 90):
        os.killpg(head.pid, signal.SIGKILL)
        pytest.fail("the Ray head did not start")
    yield f"127.0.0.1:{gcs}", url
    os.killpg(head.pid, signal.SIGKILL)  # the head, its GCS, raylet, dashboard and workers
    head.wait()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_a_search_job_on_a_ray_cluster_runs_logs_and_cancels(tmp_path, cluster):
    from tests.conftest import run_in_process

    code, out, err = run_in_process("token", "create", "token_name=w", "scope=write", cwd=tmp_path)
    assert code == 0, out + err
    headers = {"Authorization": f"Bearer {out.strip().splitlines()[-1]}"}
    gcs, dashboard = cluster
    server, base = _serve(tmp_path, _free_port(), f"clusters=[{gcs}]")  # the server's cluster
    on_ray = ["executor=ray", f"executor.address={gcs}", "executor.n_workers=1"]
    try:
        args = [*SEARCH, *on_ray, "n_trials=4", "study_name=onray"]
        started = httpx.post(
            f"{base}/api/jobs", json={"kind": "search", "args": args}, headers=headers, timeout=120
        )
        assert started.status_code == 201, started.text
        job = started.json()
        assert job["ray_address"] == gcs and job["ray_job"].startswith("nas-")
        done = _wait(base, headers, job["id"], ("done", "failed", "cancelled"), timeout=300)
        log = httpx.get(f"{base}/api/jobs/{job['id']}/log", headers=headers).text
        assert done["status"] == "done" and done["exit_code"] == 0, log
        assert "Pareto front" in log  # the nas command's own output, read back from Ray
        study = optuna.load_study(study_name="onray", storage=f"sqlite:///{tmp_path}/nas.db")
        assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 4

        from ray.job_submission import JobSubmissionClient

        # Over HTTP: a GCS address would leave a GCS client in this process, which Ray ends once
        # the cluster is gone (the server resolves GCS addresses in a subprocess for that reason).
        ray_jobs = JobSubmissionClient(dashboard)
        assert ray_jobs.get_job_status(job["ray_job"]).value == "SUCCEEDED"

        long = httpx.post(
            f"{base}/api/jobs",
            json={"kind": "search", "args": [*SEARCH, *on_ray, "n_trials=400", "study_name=long"]},
            headers=headers,
            timeout=120,
        ).json()
        assert long["status"] == "running"
        time.sleep(2)  # under way on the cluster (a 400-trial search: far from done)
        cancelled = httpx.post(f"{base}/api/jobs/{long['id']}/cancel", headers=headers).json()
        assert cancelled["status"] == "cancelled"
        final = _wait(base, headers, long["id"], ("cancelled",))
        deadline = time.time() + 60
        while time.time() < deadline and final["finished"] is None:
            final = httpx.get(f"{base}/api/jobs/{long['id']}", headers=headers).json()
            time.sleep(0.5)
        assert final["finished"] is not None, "Ray never reported the stopped job as ended"
        assert ray_jobs.get_job_status(long["ray_job"]).value == "STOPPED"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


def test_where_a_job_runs_and_a_jobs_table_of_an_earlier_version_gains_the_new_columns(tmp_path):
    import sqlalchemy as sa

    from web.jobs import JobStore
    from web.jobs.ray import ray_address_of

    assert ray_address_of(["+space=vit", "executor=ray"]) is None
    assert ray_address_of(["executor=ray", "executor.address=head:6379"]) == "head:6379"
    assert ray_address_of(["executor.address=head:6379", "executor.address=null"]) is None
    assert ray_address_of(["executor.address=head:6379", "~executor.address"]) is None
    assert ray_address_of(["+executor.address=ray://head:10001"]) == "ray://head:10001"

    url = f"sqlite:///{tmp_path}/nas.db"
    engine = sa.create_engine(url)
    with engine.begin() as connection:  # nas_jobs as the first version of the service made it
        connection.execute(
            sa.text(
                "CREATE TABLE nas_jobs (id INTEGER PRIMARY KEY, kind VARCHAR(20) NOT NULL,"
                " args TEXT NOT NULL,"
                " owner VARCHAR(200) NOT NULL, status VARCHAR(20) NOT NULL, pid INTEGER, exit_code INTEGER,"
                " log TEXT NOT NULL, created DATETIME NOT NULL, finished DATETIME)"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO nas_jobs (kind, args, owner, status, exit_code, log, created, finished) VALUES"
                " ('search', '[\"+space=tiny\"]', 'w', 'done', 0, '',"
                " '2026-11-30 10:00:00', '2026-11-30 10:01:00')"
            )
        )
    engine.dispose()
    store = JobStore(url, tmp_path / "logs", tmp_path)
    (old,) = store.list()
    assert old["status"] == "done" and old["ray_job"] is None and old["ray_address"] is None

    # A cluster where nothing answers: the job fails at once, saying why.
    started = time.time()
    nowhere = store.get(
        store.start("search", ["+space=tiny", "executor=ray", "executor.address=127.0.0.1:9"], "w")
    )
    assert time.time() - started < 30  # not Ray's minute of waiting for a GCS
    assert (
        nowhere["status"] == "failed"
        and nowhere["ray_address"] == "127.0.0.1:9"
        and nowhere["ray_job"] is None
    )
    assert "Ray job submission to 127.0.0.1:9 failed: nothing answers" in store.log_tail(nowhere["id"])
    store.dispose()
    JobStore(url, tmp_path / "logs", tmp_path).dispose()  # a second start adds nothing twice

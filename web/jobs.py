"""Jobs the service starts: ``nas search`` / ``nas export`` / ``nas train`` runs, recorded in
the study storage (table ``nas_jobs``) so a restarted server finds them.

A job runs where its own arguments say. Without ``executor.address`` it is a process on this
machine under ``python -m web.jobs RUN <id>``, a small runner in a session of its own: the runner
starts the ``nas`` command, writes its output to the job's log file, and records its exit code in
SQL when it ends, so a job survives the server being killed and its true state is known
afterwards. Cancelling sends SIGTERM to the job's process group (``nas`` checkpoints and stops).

With ``executor.address=<cluster>`` the same command is submitted as a Ray job to that cluster
(Ray's job submission API, through the head's dashboard): Ray keeps its log and state, the row
keeps its submission id, status and logs are read from the cluster, cancel is Ray's stop_job.
The cluster must reach the study storage (PostgreSQL, or SQLite on a shared path) and have nas
installed. Either way, starting the same job again resumes it (``nas search`` resumes its study).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from infra.storage import create_engine
from nas.status import ENV as STATUS_ENV

KINDS = ("search", "export", "train")
metadata = sa.MetaData()
jobs = sa.Table(
    "nas_jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("args", sa.Text, nullable=False),  # JSON list of overrides
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # running, done, failed, cancelled
    sa.Column("pid", sa.Integer, nullable=True),  # the runner's (its process group)
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("log", sa.Text, nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.Column("finished", sa.DateTime, nullable=True),
    sa.Column("ray_address", sa.Text, nullable=True),  # set: a Ray job on that cluster
    sa.Column("ray_job", sa.String(100), nullable=True),  # its submission id
)
# Ray's job states, as this table names them
RAY_STATES = {
    "PENDING": "running",
    "RUNNING": "running",
    "SUCCEEDED": "done",
    "FAILED": "failed",
    "STOPPED": "cancelled",
}


def ray_address_of(args: list[str]) -> str | None:
    """The cluster a job's ``executor.address`` override names, or None (run it here)."""
    found = None
    for a in args:
        key, _, value = a.partition("=")
        if key.lstrip("+~") == "executor.address":
            found = None if key.startswith("~") or value.strip() in ("", "null", "None") else value.strip()
    return found


CHECK_TIMEOUT_S = 120  # the CLI's check of a job's arguments (a loaded machine)


class CheckTimeout(Exception):
    """The CLI's check of a job's arguments did not end in time."""


SUBMIT_RETRY_S = 60  # how long a submission waits for a new head's job agent


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after Ray's minute of waiting for a GCS, where nothing listens at a
    ``host:port``, ``ray://host:port`` or ``http(s)://host:port`` address (``auto`` is Ray's)."""
    rest = address.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"nothing answers at {host}:{port} ({e.strerror or e})") from None


def _dashboard_url(address: str) -> str:
    """The HTTP address of the cluster's job server. A GCS (``host:6379``) or ``ray://`` address
    is resolved in a short-lived process: resolving it here would leave a GCS client in the
    server, and Ray ends a process whose GCS has gone away (the whole server, a minute after a
    cluster stops)."""
    if address.startswith(("http://", "https://")):
        return address
    code = (
        "import sys; from ray.job_submission import JobSubmissionClient as C; print(C(sys.argv[1])._address)"
    )
    done = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not done.stdout.strip():
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise ConnectionError(lines[-1] if lines else f"no Ray job server found for {address}")
    return done.stdout.strip().splitlines()[-1]


def _ray_client(address: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(_dashboard_url(address))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (ended, not yet reaped by this server) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


class JobStore:
    """Jobs in the storage at ``url``; logs under ``log_dir``; commands run in ``workdir`` with
    the server's ``config_dirs``."""

    def __init__(self, url: str, log_dir: Path, workdir: Path, config_dirs: tuple[str, ...] = ()) -> None:
        self.url, self.log_dir, self.workdir = url, log_dir, workdir
        self.config_dirs = tuple(str(Path(d).resolve()) for d in config_dirs)
        self.engine = create_engine(url)
        metadata.create_all(self.engine, tables=[jobs])
        self._add_missing_columns()
        log_dir.mkdir(parents=True, exist_ok=True)
        self._clients: dict[str, Any] = {}

    def _add_missing_columns(self) -> None:
        """A ``nas_jobs`` table of an earlier version gains the columns added since."""
        have = {c["name"] for c in sa.inspect(self.engine).get_columns("nas_jobs")}
        with self.engine.begin() as connection:
            for column in jobs.columns:
                if column.name not in have:
                    kind = column.type.compile(dialect=self.engine.dialect)
                    connection.execute(sa.text(f"ALTER TABLE nas_jobs ADD COLUMN {column.name} {kind}"))

    def client(self, address: str) -> Any:
        if address not in self._clients:
            self._clients[address] = _ray_client(address)
        return self._clients[address]

    def submission_id(self, job_id: int) -> str:
        """Unique per storage and job, so two servers on one cluster never collide."""
        return f"nas-{hashlib.sha1(self.url.encode()).hexdigest()[:8]}-{job_id}"

    def check(self, kind: str, args: list[str]) -> str | None:
        """The CLI's one-line error for ``nas <kind> <args>``, or None: the same schema checks
        (types, ranges, unknown keys, groups) run in a subprocess before anything starts."""
        try:
            done = subprocess.run(
                [sys.executable, "-m", "nas", kind, *self.command_args(args), "--cfg"],
                cwd=self.workdir,
                capture_output=True,
                text=True,
                timeout=CHECK_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise CheckTimeout(f"checking the arguments took over {CHECK_TIMEOUT_S} s; try again") from None
        if done.returncode == 0:
            return None
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return lines[-1].removeprefix(f"nas {kind}: error: ") if lines else f"exit {done.returncode}"

    def command_args(self, args: list[str]) -> list[str]:
        """The arguments ``nas`` gets for a job's own ``args``."""
        return _command_args(self.url, args, self.config_dirs)

    def status_path(self, job_id: int) -> Path:
        """Where a local job's command reports its progress (nas.status)."""
        return self.log_dir / f"job-{job_id}.status.json"

    def start(self, kind: str, args: list[str], owner: str) -> int:
        address = ray_address_of(args)
        with self.engine.begin() as connection:
            job_id = connection.execute(
                jobs.insert().values(
                    kind=kind,
                    args=json.dumps(args),
                    owner=owner,
                    status="running",
                    log="",
                    created=_now(),
                    ray_address=address,
                )
            ).inserted_primary_key[0]
            log = self.log_dir / f"job-{job_id}.log"
            connection.execute(jobs.update().where(jobs.c.id == job_id).values(log=str(log)))
        if address is not None:
            return self._submit(job_id, kind, args, address)
        runner = subprocess.Popen(
            [sys.executable, "-m", "web.jobs", "RUN", self.url, str(job_id), *self.config_dirs],
            cwd=self.workdir,
            env=os.environ | {STATUS_ENV: str(self.status_path(job_id))},
            start_new_session=True,  # outlives the server; cancel signals the whole group
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with self.engine.begin() as connection:
            connection.execute(jobs.update().where(jobs.c.id == job_id).values(pid=runner.pid))
        return job_id

    def _submit(self, job_id: int, kind: str, args: list[str], address: str) -> int:
        """``nas <kind> <args>`` as a Ray job on the cluster at ``address``; a cluster that cannot
        be reached fails the job at once, with the reason in its log."""
        submission = self.submission_id(job_id)
        entrypoint = shlex.join(["python", "-m", "nas", kind, *self.command_args(args)])
        try:
            _check_reachable(address)
            deadline = time.monotonic() + SUBMIT_RETRY_S
            while True:
                try:
                    self.client(address).submit_job(
                        entrypoint=entrypoint, submission_id=submission, metadata={"nas_job": str(job_id)}
                    )
                    break
                except Exception as e:  # a head that has just started: its job agent is not up yet
                    if "try again later" not in str(e) or time.monotonic() > deadline:
                        raise
                    time.sleep(1)
            values: dict[str, Any] = {"ray_job": submission}
        except Exception as e:  # unreachable cluster, no dashboard, refused: the job failed
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            Path(self.log_dir / f"job-{job_id}.log").write_text(
                f"Ray job submission to {address} failed: {reason}\n"
            )
            values = {"status": "failed", "finished": _now()}
        with self.engine.begin() as connection:
            connection.execute(jobs.update().where(jobs.c.id == job_id).values(**values))
        return job_id

    def _ray_state(self, job: dict) -> dict[str, Any]:
        """What the cluster says of a running Ray job: the row's new values, or {} while it runs
        (or while the cluster cannot be reached: it is asked again next time)."""
        try:
            info = self.client(job["ray_address"]).get_job_info(job["ray_job"])
        except Exception:
            return {}
        status = RAY_STATES.get(str(getattr(info.status, "value", info.status)), "running")
        if status == "running":
            return {}
        code = getattr(info, "driver_exit_code", None)
        return {"status": status, "exit_code": code, "finished": _now()}

    def get(self, job_id: int) -> dict | None:
        with self.engine.begin() as connection:
            row = connection.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
            if row is None:
                return None
            job = dict(row._mapping)
            if job["ray_job"] and job["finished"] is None:  # running, or cancelled and stopping
                ended = self._ray_state(job)
                if ended:
                    if job["status"] == "cancelled":
                        ended["status"] = "cancelled"
                    job |= ended
                    connection.execute(jobs.update().where(jobs.c.id == job_id).values(**ended))
            elif job["status"] == "running" and job["pid"] and not _alive(job["pid"]):
                # the runner died without recording an end (the machine restarted, kill -9)
                job |= {"status": "failed", "finished": _now()}
                connection.execute(
                    jobs.update()
                    .where(jobs.c.id == job_id, jobs.c.status == "running")
                    .values(status="failed", finished=job["finished"])
                )
        job["args"] = json.loads(job["args"])
        return job

    def list(self) -> list[dict]:
        with self.engine.connect() as connection:
            ids = [row.id for row in connection.execute(sa.select(jobs.c.id).order_by(jobs.c.id.desc()))]
        return [self.get(i) for i in ids]

    def cancel(self, job_id: int) -> dict | None:
        job = self.get(job_id)
        if job is not None and job["status"] == "running" and job["ray_job"]:
            self.client(job["ray_address"]).stop_job(job["ray_job"])  # SIGTERM, as for a local job
            with self.engine.begin() as connection:
                connection.execute(jobs.update().where(jobs.c.id == job_id).values(status="cancelled"))
            return self.get(job_id)
        if job is not None and job["status"] == "running" and job["pid"]:
            with self.engine.begin() as connection:
                connection.execute(jobs.update().where(jobs.c.id == job_id).values(status="cancelled"))
            try:
                os.killpg(job["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
            job = self.get(job_id)
        return job

    def log_tail(self, job_id: int, max_bytes: int = 20_000) -> str | None:
        job = self.get(job_id)
        if job is None:
            return None
        if job["ray_job"]:
            try:
                text = self.client(job["ray_address"]).get_job_logs(job["ray_job"])
            except Exception as e:
                return (
                    f"(the log of Ray job {job['ray_job']} cannot be read from {job['ray_address']}: {e})\n"
                )
            return text[-max_bytes:]
        path = Path(job["log"])
        if not path.is_file():
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - max_bytes))
            return f.read().decode(errors="replace")

    def dispose(self) -> None:
        self.engine.dispose()


def _command_args(url: str, args: list[str], config_dirs: tuple[str, ...]) -> list[str]:
    """The arguments of a job's ``nas`` command: the server's storage and config folders around
    the job's own (checked by web.policy) overrides."""
    dirs = [part for d in config_dirs for part in ("--config-dir", d)]
    return [f"storage={url}", *args, "progress=false", *dirs]


def _run(url: str, job_id: int, config_dirs: tuple[str, ...]) -> int:
    """The runner: the job's ``nas`` command, its log, its end recorded in SQL."""
    engine = create_engine(url)
    with engine.connect() as connection:
        job = connection.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
    args = _command_args(url, json.loads(job.args), config_dirs)
    with open(job.log, "ab") as log:
        child = subprocess.Popen([sys.executable, "-m", "nas", job.kind, *args], stdout=log, stderr=log)

        def forward(signum, frame):  # cancel: the nas command stops as on Ctrl-C or kill
            child.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, forward)
        code = child.wait()
    status = "done" if code == 0 else "failed"
    with engine.begin() as connection:
        current = connection.execute(sa.select(jobs.c.status).where(jobs.c.id == job_id)).scalar()
        connection.execute(
            jobs.update()
            .where(jobs.c.id == job_id)
            .values(status="cancelled" if current == "cancelled" else status, exit_code=code, finished=_now())
        )
    engine.dispose()
    return code


if __name__ == "__main__" and len(sys.argv) >= 4 and sys.argv[1] == "RUN":
    sys.exit(_run(sys.argv[2], int(sys.argv[3]), tuple(sys.argv[4:])))

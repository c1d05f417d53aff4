"""Jobs the service starts: ``nas search`` / ``nas export`` / ``nas train`` processes on this
machine, recorded in the study storage (table ``nas_jobs``) so a restarted server finds them.

Each job runs under ``python -m web.jobs RUN <id>``, a small runner in a session of its own: the
runner starts the ``nas`` command, writes its output to the job's log file, and records its exit
code in SQL when it ends, so a job survives the server being killed and its true state is known
afterwards. Cancelling sends SIGTERM to the job's process group (``nas`` checkpoints and stops);
starting the same job again resumes it (``nas search`` resumes its study).
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

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
)


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
    """Jobs in the storage at ``url``; logs under ``log_dir``; commands run in ``workdir``."""

    def __init__(self, url: str, log_dir: Path, workdir: Path) -> None:
        self.url, self.log_dir, self.workdir = url, log_dir, workdir
        self.engine = sa.create_engine(url)
        metadata.create_all(self.engine, tables=[jobs])
        log_dir.mkdir(parents=True, exist_ok=True)

    def check(self, kind: str, args: list[str]) -> str | None:
        """The CLI's one-line error for ``nas <kind> <args>``, or None: the same schema checks
        (types, ranges, unknown keys, groups) run in a subprocess before anything starts."""
        done = subprocess.run(
            [sys.executable, "-m", "nas", kind, *self._args(kind, args), "--cfg"],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode == 0:
            return None
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return lines[-1].removeprefix(f"nas {kind}: error: ") if lines else f"exit {done.returncode}"

    def _args(self, kind: str, args: list[str]) -> list[str]:
        return [f"storage={self.url}", *args, "progress=false"]

    def start(self, kind: str, args: list[str], owner: str) -> int:
        with self.engine.begin() as connection:
            job_id = connection.execute(
                jobs.insert().values(
                    kind=kind, args=json.dumps(args), owner=owner, status="running", log="", created=_now()
                )
            ).inserted_primary_key[0]
            log = self.log_dir / f"job-{job_id}.log"
            connection.execute(jobs.update().where(jobs.c.id == job_id).values(log=str(log)))
        runner = subprocess.Popen(
            [sys.executable, "-m", "web.jobs", "RUN", self.url, str(job_id)],
            cwd=self.workdir,
            start_new_session=True,  # outlives the server; cancel signals the whole group
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with self.engine.begin() as connection:
            connection.execute(jobs.update().where(jobs.c.id == job_id).values(pid=runner.pid))
        return job_id

    def get(self, job_id: int) -> dict | None:
        with self.engine.begin() as connection:
            row = connection.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
            if row is None:
                return None
            job = dict(row._mapping)
            if job["status"] == "running" and job["pid"] and not _alive(job["pid"]):
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
        path = Path(job["log"])
        if not path.is_file():
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - max_bytes))
            return f.read().decode(errors="replace")

    def dispose(self) -> None:
        self.engine.dispose()


def _run(url: str, job_id: int) -> int:
    """The runner: the job's ``nas`` command, its log, its end recorded in SQL."""
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        job = connection.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
    args = [f"storage={url}", *json.loads(job.args), "progress=false"]
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


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "RUN":
    sys.exit(_run(sys.argv[2], int(sys.argv[3])))

"""Jobs as processes on this machine: ``python -m web.jobs.local RUN <url> <id>``, a small runner
in a session of its own, starts the ``nas`` command, writes its output to the job's log file and
records its exit code in SQL when it ends. So a job survives the server being killed and its
true state is known afterwards; cancelling sends SIGTERM to the process group (``nas``
checkpoints and stops)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from infra.storage import create_engine
from nas.status import ENV as STATUS_ENV
from web.jobs.runner import command_args, now
from web.jobs.table import jobs


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


class LocalRunner:
    """The JobRunner for jobs on this machine: commands run in ``workdir`` with the server's
    ``config_dirs``; logs and progress files under ``log_dir``."""

    def __init__(self, url: str, log_dir: Path, workdir: Path, config_dirs: tuple[str, ...]) -> None:
        self.url, self.log_dir, self.workdir, self.config_dirs = url, log_dir, workdir, config_dirs

    def status_path(self, job: dict[str, Any]) -> Path:
        return self.log_dir / f"job-{job['id']}.status.json"

    def start(self, job: dict[str, Any]) -> dict[str, Any]:
        runner = subprocess.Popen(
            [sys.executable, "-m", "web.jobs.local", "RUN", self.url, str(job["id"]), *self.config_dirs],
            cwd=self.workdir,
            env=os.environ | {STATUS_ENV: str(self.status_path(job))},
            start_new_session=True,  # outlives the server; cancel signals the whole group
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return {"pid": runner.pid}

    def refresh(self, job: dict[str, Any]) -> dict[str, Any]:
        """A runner that died without recording an end (the machine restarted, kill -9) failed."""
        if job["status"] == "running" and job["pid"] and not _alive(job["pid"]):
            return {"status": "failed", "finished": now()}
        return {}

    def cancel(self, job: dict[str, Any]) -> None:
        if job["pid"]:
            try:
                os.killpg(job["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass

    def log_tail(self, job: dict[str, Any], max_bytes: int) -> str:
        path = Path(job["log"])
        if not path.is_file():
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - max_bytes))
            return f.read().decode(errors="replace")


def _run(url: str, job_id: int, config_dirs: tuple[str, ...]) -> int:
    """The runner: the job's ``nas`` command, its log, its end recorded in SQL."""
    engine = create_engine(url)
    with engine.connect() as connection:
        job = connection.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
    args = command_args(url, json.loads(job.args), config_dirs)
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
            .values(status="cancelled" if current == "cancelled" else status, exit_code=code, finished=now())
        )
    engine.dispose()
    return code


if __name__ == "__main__" and len(sys.argv) >= 4 and sys.argv[1] == "RUN":
    sys.exit(_run(sys.argv[2], int(sys.argv[3]), tuple(sys.argv[4:])))

"""Jobs the service starts (``nas search`` / ``nas export`` / ``nas train`` runs): rows of the
``nas_jobs`` table in the study storage, each run by the JobRunner its arguments choose."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from infra.storage import create_engine
from web.jobs.local import LocalRunner
from web.jobs.ray import RayRunner, ray_address_of
from web.jobs.runner import JobRunner, command_args, now
from web.jobs.table import add_missing_columns, jobs, metadata

CHECK_TIMEOUT_S = 120  # the CLI's check of a job's arguments (a loaded machine)


class CheckTimeout(Exception):
    """The CLI's check of a job's arguments did not end in time."""


class JobStore:
    """Jobs in the storage at ``url``: logs under ``log_dir``; local commands run in ``workdir``
    with the server's ``config_dirs``, those naming ``executor.address`` on that Ray cluster.
    Either way, starting the same job again resumes it (``nas search`` resumes its study)."""

    def __init__(self, url: str, log_dir: Path, workdir: Path, config_dirs: tuple[str, ...] = ()) -> None:
        self.url, self.log_dir, self.workdir = url, log_dir, workdir
        self.config_dirs = tuple(str(Path(d).resolve()) for d in config_dirs)
        self.engine = create_engine(url)
        metadata.create_all(self.engine, tables=[jobs])
        add_missing_columns(self.engine)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.local = LocalRunner(url, log_dir, workdir, self.config_dirs)
        self.ray = RayRunner(url, log_dir, self.config_dirs)

    def runner(self, job: dict[str, Any]) -> JobRunner:
        """The runner of a job: the cluster its arguments named, or this machine."""
        return self.ray if job["ray_address"] else self.local

    def command_args(self, args: list[str]) -> list[str]:
        """The arguments ``nas`` gets for a job's own ``args``."""
        return command_args(self.url, args, self.config_dirs)

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

    def start(self, kind: str, args: list[str], owner: str) -> int:
        row = {"kind": kind, "args": json.dumps(args), "owner": owner, "status": "running", "log": ""}
        with self.engine.begin() as connection:
            job_id = connection.execute(
                jobs.insert().values(**row, created=now(), ray_address=ray_address_of(args))
            ).inserted_primary_key[0]
            log = str(self.log_dir / f"job-{job_id}.log")
            connection.execute(jobs.update().where(jobs.c.id == job_id).values(log=log))
        job = self._row(job_id)
        self._update(job_id, self.runner(job).start(job))
        return job_id

    def _row(self, job_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            return None
        job = dict(row._mapping)
        job["args"] = json.loads(job["args"])
        return job

    def _update(self, job_id: int, values: dict[str, Any], only_running: bool = False) -> None:
        if not values:
            return
        query = jobs.update().where(jobs.c.id == job_id)
        if only_running:  # a runner that recorded its end meanwhile wins
            query = query.where(jobs.c.status.in_(("running", "cancelled")), jobs.c.finished.is_(None))
        with self.engine.begin() as connection:
            connection.execute(query.values(**values))

    def get(self, job_id: int) -> dict[str, Any] | None:
        """The job, its state first brought up to date by its runner."""
        job = self._row(job_id)
        if job is not None and job["finished"] is None:  # running, or cancelled and stopping
            changed = self.runner(job).refresh(job)
            if changed:
                self._update(job_id, changed, only_running=True)
                job = self._row(job_id)
        return job

    def status_path(self, job: dict[str, Any]) -> Path | None:
        return self.runner(job).status_path(job)

    def list(self) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            ids = [row.id for row in connection.execute(sa.select(jobs.c.id).order_by(jobs.c.id.desc()))]
        return [self.get(i) for i in ids]

    def cancel(self, job_id: int) -> dict[str, Any] | None:
        job = self.get(job_id)
        if job is not None and job["status"] == "running":
            self._update(job_id, {"status": "cancelled"})
            self.runner(job).cancel(job)
            job = self.get(job_id)
        return job

    def log_tail(self, job_id: int, max_bytes: int = 20_000) -> str | None:
        job = self.get(job_id)
        return None if job is None else self.runner(job).log_tail(job, max_bytes)

    def dispose(self) -> None:
        self.engine.dispose()

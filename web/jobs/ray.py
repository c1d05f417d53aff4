"""Jobs on a Ray cluster: a job whose arguments set ``executor.address`` is submitted as a Ray job
to that cluster (Ray's job submission API, through the head's dashboard). Ray keeps its log and
state, the row keeps its submission id, status and logs are read from the cluster, cancel is
Ray's ``stop_job`` (SIGTERM, as for a local job). The cluster must reach the study storage
(PostgreSQL, or SQLite on a shared path) and have nas installed."""

from __future__ import annotations

import hashlib
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from web.jobs.runner import command_args, now

SUBMIT_RETRY_S = 60  # how long a submission waits for a new head's job agent
# Ray's job states, as the jobs table names them
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


class RayRunner:
    """The JobRunner for jobs on Ray clusters (each job's ``ray_address``); clients are made once
    per cluster."""

    def __init__(self, url: str, log_dir: Path, config_dirs: tuple[str, ...]) -> None:
        self.url, self.log_dir, self.config_dirs = url, log_dir, config_dirs
        self._clients: dict[str, Any] = {}

    def client(self, address: str) -> Any:
        if address not in self._clients:
            from ray.job_submission import JobSubmissionClient  # Ray only where a cluster is used

            self._clients[address] = JobSubmissionClient(_dashboard_url(address))
        return self._clients[address]

    def submission_id(self, job_id: int) -> str:
        """Unique per storage and job, so two servers on one cluster never collide."""
        return f"nas-{hashlib.sha1(self.url.encode()).hexdigest()[:8]}-{job_id}"

    def status_path(self, job: dict[str, Any]) -> None:
        return None  # the command runs on the cluster: its progress file is not here

    def start(self, job: dict[str, Any]) -> dict[str, Any]:
        """``nas <kind> <args>`` as a Ray job; a cluster that cannot be reached fails the job at
        once, with the reason in its log."""
        address, submission = job["ray_address"], self.submission_id(job["id"])
        entrypoint = shlex.join(
            ["python", "-m", "nas", job["kind"], *command_args(self.url, job["args"], self.config_dirs)]
        )
        try:
            _check_reachable(address)
            deadline = time.monotonic() + SUBMIT_RETRY_S
            while True:
                try:
                    self.client(address).submit_job(
                        entrypoint=entrypoint, submission_id=submission, metadata={"nas_job": str(job["id"])}
                    )
                    return {"ray_job": submission}
                except Exception as e:  # a head that has just started: its job agent is not up yet
                    if "try again later" not in str(e) or time.monotonic() > deadline:
                        raise
                    time.sleep(1)
        except Exception as e:  # unreachable cluster, no dashboard, refused: the job failed
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            Path(job["log"]).write_text(f"Ray job submission to {address} failed: {reason}\n")
            return {"status": "failed", "finished": now()}

    def refresh(self, job: dict[str, Any]) -> dict[str, Any]:
        """What the cluster says of a submitted job (a cancelled one stays cancelled)."""
        if not job["ray_job"]:
            return {}
        try:
            info = self.client(job["ray_address"]).get_job_info(job["ray_job"])
        except Exception:
            return {}
        status = RAY_STATES.get(str(getattr(info.status, "value", info.status)), "running")
        if status == "running":
            return {}
        code = getattr(info, "driver_exit_code", None)
        return {"status": "cancelled" if job["status"] == "cancelled" else status, "exit_code": code} | {
            "finished": now()
        }

    def cancel(self, job: dict[str, Any]) -> None:
        if job["ray_job"]:
            self.client(job["ray_address"]).stop_job(job["ray_job"])  # SIGTERM, as for a local job

    def log_tail(self, job: dict[str, Any], max_bytes: int) -> str:
        if not job["ray_job"]:
            path = Path(job["log"])
            return path.read_text(errors="replace")[-max_bytes:] if path.is_file() else ""
        try:
            text = self.client(job["ray_address"]).get_job_logs(job["ray_job"])
        except Exception as e:
            return f"(the log of Ray job {job['ray_job']} cannot be read from {job['ray_address']}: {e})\n"
        return text[-max_bytes:]

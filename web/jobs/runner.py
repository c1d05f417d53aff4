"""Where a job's ``nas`` command runs: the contract of a job runner, and what every runner shares
(the command line, the time)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Protocol


class JobRunner(Protocol):
    """Runs jobs recorded in the ``nas_jobs`` table (JobStore keeps the rows; a runner only
    executes). Every method gets the job's row as a dict and answers with row values to store.

    * ``start(job)``: launch the command; the row values that describe it now (a process id, a
      submission id, or a failed status with the reason in the log).
    * ``refresh(job)``: for a job not yet finished, what changed (status, exit code, finish
      time), or ``{}`` while it runs or while its state cannot be read (asked again later).
    * ``cancel(job)``: stop it as Ctrl-C would (``nas`` checkpoints and stops).
    * ``log_tail(job, max_bytes)``: the end of its output.
    * ``status_path(job)``: where its command reports progress (nas.status), or None where the
      runner cannot read such a file (another machine).
    """

    def start(self, job: dict[str, Any]) -> dict[str, Any]: ...

    def refresh(self, job: dict[str, Any]) -> dict[str, Any]: ...

    def cancel(self, job: dict[str, Any]) -> None: ...

    def log_tail(self, job: dict[str, Any], max_bytes: int) -> str: ...

    def status_path(self, job: dict[str, Any]) -> Path | None: ...


def command_args(url: str, args: list[str], config_dirs: tuple[str, ...]) -> list[str]:
    """The arguments of a job's ``nas`` command: the server's storage and config folders around
    the job's own (checked by web.policy) overrides."""
    dirs = [part for d in config_dirs for part in ("--config-dir", d)]
    return [f"storage={url}", *args, "progress=false", *dirs]


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)

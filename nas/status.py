"""How far a running ``nas`` command is, as a small JSON file another process can read.

A command started with ``NAS_STATUS_FILE=<path>`` in its environment (the service's job runner
sets it) rewrites that file, atomically, whenever its progress moves: the phase (``supernet``
steps, search ``trials``, ``training`` candidates), how many of how many are done, the study,
and when the phase began, from which the reader estimates the time left. Without the variable
nothing is written. Torch-free: the service reads it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ENV = "NAS_STATUS_FILE"
MIN_INTERVAL_S = 0.5  # rewrites of one phase at most this often (its first and last always written)


@dataclass(frozen=True)
class Status:
    phase: str
    done: int
    total: int | None
    study: str | None
    phase_started: float  # time.time() when the phase began
    updated: float

    def eta_s(self) -> float | None:
        """Seconds left in the phase at its pace so far (None before the first step)."""
        if self.total is None or self.done <= 0 or self.done >= self.total:
            return 0.0 if self.total is not None and self.done >= self.total else None
        pace = (self.updated - self.phase_started) / self.done
        return round(pace * (self.total - self.done), 1)


_phase: dict[str, float] = {}  # phase -> when it began (in this process)
_last_write = [0.0]


def report(phase: str, done: int, total: int | None = None, study: str | None = None) -> None:
    """Record progress, if this process was asked to (``NAS_STATUS_FILE``)."""
    path = os.environ.get(ENV)
    if not path:
        return
    now = time.time()
    began = phase not in _phase
    if began:
        _phase.clear()
        _phase[phase] = now
    finished = total is not None and done >= total
    if not (began or finished) and now - _last_write[0] < MIN_INTERVAL_S:
        return
    _last_write[0] = now
    status = Status(phase, int(done), total, study, _phase[phase], now)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(asdict(status)))
        os.replace(tmp, target)
    except OSError:  # progress is a courtesy: a full disk must not stop the run
        tmp.unlink(missing_ok=True)


def read(path: str | Path) -> Status | None:
    """The status in ``path``, or None (missing, being replaced, or not a status file)."""
    try:
        data = json.loads(Path(path).read_text())
        return Status(**{k: data[k] for k in Status.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None

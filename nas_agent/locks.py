"""The machine-wide measurement lock's files and protocol, torch-free (infra.locks builds the
search's reader-writer locks on them): an agent measuring on a machine where searches also run
takes the same lock as their profilers, so its timing never overlaps their computation, and
several agents on one device measure one at a time.

``fcntl.flock`` locks are released by the kernel when a process dies. A turnstile (the
``.gate`` file) lets a waiting exclusive holder in before new shared holders (no starvation).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no machine-wide lock
    fcntl = None  # type: ignore[assignment]

MACHINE = "machine"


def lock_dir() -> Path:
    """``NAS_LOCK_DIR`` or a folder in the system temp dir, shared by every process here."""
    folder = Path(os.environ.get("NAS_LOCK_DIR") or Path(tempfile.gettempdir()) / "nas-locks")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_lock(name: str) -> int:
    return os.open(lock_dir() / name, os.O_RDWR | os.O_CREAT, 0o666)


def locking_off() -> bool:
    """No lock on this platform, or switched off (``NAS_NO_MEASURE_LOCK``)."""
    return fcntl is None or bool(os.environ.get("NAS_NO_MEASURE_LOCK"))


@contextlib.contextmanager
def flocked(device: str, exclusive: bool):
    """Hold ``device``'s lock, shared or exclusive, through its turnstile."""
    safe = device.replace(":", "_").replace("/", "_")
    gate, main = open_lock(f"{safe}.gate"), open_lock(f"{safe}.lock")
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)  # the turnstile: measurements queue here first
        try:
            fcntl.flock(main, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            if not exclusive:
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(main, fcntl.LOCK_UN)
            if exclusive:
                fcntl.flock(gate, fcntl.LOCK_UN)
    finally:
        os.close(main)
        os.close(gate)


@contextlib.contextmanager
def measuring_alone():
    """Hold the machine's lock exclusively while timing calls (what a CPU measurement of the
    local profilers holds: infra.locks.measuring())."""
    if locking_off():
        yield
        return
    with flocked(MACHINE, exclusive=True):
        yield

"""Child processes that must not outlive their parent (search workers, distributed training
ranks). Light on imports: a child arms this before it spends seconds importing torch."""

from __future__ import annotations

import ctypes
import os
import signal


def die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when its parent dies (PR_SET_PDEATHSIG), so a killed search
    leaves no workers; exit at once if the parent is already gone."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)

"""Machine-wide reader-writer locks that keep latency measurements quiet.

Search workers hold it *shared* while they compute (extracting and scoring a candidate) and a
profiler holds it *exclusively* while it times calls: a measurement then never overlaps another
measurement or another worker's computation on this machine, whichever process or search they
belong to. A turnstile lets a waiting measurement in before new computations start (no
starvation). ``fcntl.flock`` locks are released by the kernel when a process dies, so a killed
worker never leaves the lock held.

With several GPUs, each GPU has a lock of its own beside the machine's: a process that works on
a GPU (``work_on``, e.g. a search worker given one GPU by Ray) holds that GPU's lock shared as
well while it computes, and a measurement on a GPU (``measuring(gpu_lock(...))``) holds that
GPU's lock exclusively and the machine's shared. So a GPU measurement never overlaps other work
on the same GPU, while workers on the other GPUs go on; a CPU measurement still waits for all.

Re-entrant per thread: inside ``computing()`` or ``measuring()``, a nested ``computing()`` holds
on to what the thread has (a fresh shared request would queue behind a waiting measurement that
waits for this very thread). ``measuring()`` inside ``computing()`` would wait for itself and
raises instead.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

from nas_agent.locks import MACHINE, fcntl, flocked, lock_dir, locking_off, open_lock

__all__ = [
    "MACHINE",
    "computing",
    "gpu_lock",
    "keep_off",
    "lock_dir",
    "measuring",
    "measuring_on_slot",
    "slot_lock",
    "work_on",
]

_held = threading.local()  # device -> "shared" | "exclusive", what this thread holds


@contextlib.contextmanager
def _locked(device: str, exclusive: bool):
    if locking_off():
        yield
        return
    held = _held.__dict__.setdefault("modes", {})
    if device in held:  # nested: the thread already holds the lock
        if exclusive and held[device] == "shared":
            raise RuntimeError(f"measuring({device!r}) inside computing(): it would wait for itself")
        yield
        return
    held[device] = "exclusive" if exclusive else "shared"
    try:
        with flocked(device, exclusive):
            yield
    finally:
        del held[device]


_work_on: list[str] = []  # the GPU lock this process computes on (work_on), if any


def work_on(gpu: str | None) -> None:
    """Say which GPU this process computes on (its ``gpu_lock`` name; None: none): from now on
    ``computing()`` also holds that GPU's lock shared."""
    _work_on[:] = [gpu] if gpu else []


def gpu_lock(uuid: str) -> str:
    """The lock name of the GPU with this UUID (stable whatever CUDA_VISIBLE_DEVICES says)."""
    return f"gpu-{uuid}"


@contextlib.contextmanager
def measuring(device: str = MACHINE):
    """Hold while timing calls. On the machine (CPU timing): no other measurement and no
    computation anywhere meanwhile. On a GPU (``gpu_lock``): none on that GPU; other GPUs' work
    goes on."""
    if device == MACHINE:
        with _locked(MACHINE, exclusive=True):
            yield
        return
    with _locked(MACHINE, exclusive=False), _locked(device, exclusive=True):
        yield


def slot_lock(cpu: int) -> str:
    """The lock name of the measurement slot on logical CPU ``cpu``."""
    return f"slot-cpu{cpu}"


@contextlib.contextmanager
def measuring_on_slot(slots: list[str]):
    """Hold one of ``slots`` (measurement slots, one core each) exclusively and the machine
    shared: measurements on the other slots, and computations kept off the slots' cores, go on
    meanwhile; a whole-machine measurement (``measuring()``) waits for all. Yields the index of
    the slot held (the first free one)."""
    with _locked(MACHINE, exclusive=False):
        if locking_off():
            yield 0
            return
        while True:
            for i, name in enumerate(slots):
                fd = open_lock(f"{name}.lock")
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                try:
                    yield i
                    return
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
            time.sleep(0.005)


def keep_off(cores: set[int]) -> None:
    """This thread (and the threads it starts from now on) off ``cores`` (measurement slots), if
    any other core is left."""
    if not cores or not hasattr(os, "sched_getaffinity"):
        return
    left = os.sched_getaffinity(0) - cores
    if left:
        os.sched_setaffinity(0, left)


@contextlib.contextmanager
def computing():
    """Hold while computing (scoring candidates): many at once, never during a measurement on
    this machine's CPU or on the GPU this process works on."""
    with contextlib.ExitStack() as stack:
        for name in (MACHINE, *_work_on):
            stack.enter_context(_locked(name, exclusive=False))
        yield

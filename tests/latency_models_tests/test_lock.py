"""The machine-wide measurement lock: real processes, real flock."""

import multiprocessing
import time

from infra.locks import computing, measuring


def _compute(log: str, hold_s: float, name: str) -> None:
    with computing():
        with open(log, "a") as f:
            f.write(f"{name} start {time.time()}\n")
        time.sleep(hold_s)
        with open(log, "a") as f:
            f.write(f"{name} end {time.time()}\n")


def _events(log) -> dict[str, float]:
    return {f"{n} {e}": float(t) for n, e, t in (line.split() for line in log.read_text().splitlines())}


def test_measurement_waits_for_computation_and_holds_new_ones_back(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    log = tmp_path / "log"
    ctx = multiprocessing.get_context("spawn")
    first = ctx.Process(target=_compute, args=(str(log), 1.5, "first"))
    first.start()
    while not log.exists():
        time.sleep(0.01)
    second = None
    with measuring():  # waits for "first" to finish computing
        got = time.time()
        second = ctx.Process(target=_compute, args=(str(log), 0.1, "second"))
        second.start()
        time.sleep(1.0)  # "second" must not start computing while this measures
        released = time.time()
    first.join(30)
    second.join(30)
    events = _events(log)
    assert got >= events["first end"]
    assert events["second start"] >= released
    assert first.exitcode == 0 and second.exitcode == 0


def _hold_and_die(locks: str) -> None:
    import os

    os.environ["NAS_LOCK_DIR"] = locks
    with measuring():
        os._exit(9)  # killed while measuring: the kernel drops its flock


def test_a_killed_holder_does_not_keep_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    dead = multiprocessing.get_context("spawn").Process(target=_hold_and_die, args=(str(tmp_path / "locks"),))
    dead.start()
    dead.join(30)
    assert dead.exitcode == 9
    start = time.time()
    with measuring():  # free again: acquired at once
        pass
    with computing():
        pass
    assert time.time() - start < 5


def _queue_a_measurement(locks: str) -> None:
    import os

    os.environ["NAS_LOCK_DIR"] = locks
    with measuring():
        pass


def _gate_taken(locks) -> bool:
    """Whether another process holds the turnstile (a measurement queued or running)."""
    import fcntl
    import os

    fd = os.open(locks / "machine.gate", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_nested_computing_does_not_queue_behind_a_waiting_measurement(tmp_path, monkeypatch):
    """A thread that computes and calls code that also says computing() (a storage call inside
    a scoring step) must not wait at the turnstile for a measurement that waits for it."""
    import threading

    locks = tmp_path / "locks"
    monkeypatch.setenv("NAS_LOCK_DIR", str(locks))
    measurer = multiprocessing.get_context("spawn").Process(target=_queue_a_measurement, args=(str(locks),))
    done = threading.Event()

    def nested() -> None:
        with computing():
            measurer.start()
            while not _gate_taken(locks):  # the measurement is queued behind this computation
                time.sleep(0.01)
            with computing():
                done.set()

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(60)
    if not done.is_set():
        measurer.kill()  # frees the turnstile, so the stuck thread can end
    measurer.join(30)
    assert done.is_set(), "nested computing() waited for the queued measurement: deadlock"
    assert measurer.exitcode == 0


def test_measuring_inside_computing_is_refused(tmp_path, monkeypatch):
    import pytest

    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    with computing():
        with pytest.raises(RuntimeError, match="inside computing"):
            with measuring():
                pass
    with measuring():  # nothing left held
        with computing():  # computing inside a measurement: the thread holds more already
            pass


def _compute_on(log: str, hold_s: float, name: str, gpu: str, locks: str) -> None:
    import os

    from infra.locks import work_on

    os.environ["NAS_LOCK_DIR"] = locks
    work_on(gpu)
    _compute(log, hold_s, name)


def test_a_gpu_measurement_waits_for_work_on_that_gpu_only(tmp_path, monkeypatch):
    """Workers one per GPU: a measurement on GPU B goes ahead while a worker computes on GPU A;
    one on GPU A, and any CPU measurement, wait for it. (Lock names, so no GPU is needed.)"""
    from infra.locks import gpu_lock

    locks = str(tmp_path / "locks")
    monkeypatch.setenv("NAS_LOCK_DIR", locks)
    log = tmp_path / "log"
    a, b = gpu_lock("GPU-aaaa"), gpu_lock("GPU-bbbb")
    ctx = multiprocessing.get_context("spawn")
    worker = ctx.Process(target=_compute_on, args=(str(log), 2.0, "on_a", a, locks))
    worker.start()
    while not log.exists():
        time.sleep(0.01)
    with measuring(b):
        on_b = time.time()
    with measuring(a):
        on_a = time.time()
    worker.join(30)
    events = _events(log)
    assert on_b < events["on_a end"] <= on_a
    worker = ctx.Process(target=_compute_on, args=(str(log), 1.0, "again_on_a", a, locks))
    worker.start()
    while "again_on_a start" not in log.read_text():
        time.sleep(0.01)
    with measuring():  # the CPU: waits for work on any GPU
        on_cpu = time.time()
    worker.join(30)
    assert on_cpu >= _events(log)["again_on_a end"]

"""The timing discipline every measurement of latency follows, here and on a measurement agent:
one thread pinned to one core, the load elsewhere watched (a measurement taken under load is
repeated, then flagged), rounds of calls (the median of round medians). Torch-free: the agent
runs it with ONNX Runtime alone; latency_models re-exports it for the local profilers."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import dataclass


@contextlib.contextmanager
def pinned(cpu: int | None):
    """Run the calling thread on one CPU core only (None: leave the affinity alone)."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def resolve_cpu(pin_cpu: int | str | None) -> int | None:
    """``auto``: the last core this process may use (away from core 0's interrupts)."""
    if pin_cpu in (None, "none", "null") or not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if pin_cpu == "auto":
        return allowed[-1]
    if not isinstance(pin_cpu, int) or pin_cpu not in allowed:
        raise ValueError(f"profiler.pin_cpu: {pin_cpu!r} is not auto, null or one of cores {allowed}")
    return pin_cpu


def _stat_fields(text: str) -> list[int]:
    return [int(x) for x in text.split()[1:]]


def _busy(fields: list[int]) -> int:
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal


def _own_jiffies(path: str) -> int:
    with open(path) as f:
        own = f.read().rsplit(")", 1)[1].split()
    return int(own[11]) + int(own[12])  # utime, stime


def core_siblings(cpu: int) -> set[int]:
    """The logical CPUs that share ``cpu``'s physical core (SMT siblings), ``cpu`` itself
    excluded; none where the topology is not published."""
    try:
        text = open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read().strip()
    except OSError:
        return set()
    out: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out - {cpu}


@dataclass(frozen=True)
class Load:
    """CPU load (cores) that other work put where a measurement runs: ``near`` on the measuring
    core and its SMT siblings (for a measurement pinned to one core), ``machine`` on the whole
    machine; both without the measurement's own time."""

    near: float
    machine: float


MIN_WINDOW_S = 0.1  # LoadMeter's shortest window: 10 ticks of /proc/stat (100 Hz)


class LoadMeter:
    """Busy time elsewhere between ``start()`` and ``stop()``: on the whole machine minus this
    process, and, for a measurement pinned to ``cpu``, on that core minus the calling thread plus
    its siblings (what slows a one-core measurement; a busy core across the machine mostly does
    not). Unavailable without /proc: ``stop()`` then returns None."""

    def __init__(self, cpu: int | None) -> None:
        self.cpu, self.siblings = cpu, core_siblings(cpu) if cpu is not None else set()

    def _read(self) -> tuple[int, dict[int, int], int, int] | None:
        try:
            with open("/proc/stat") as f:
                lines = f.read().splitlines()
            total = _busy(_stat_fields(lines[0]))
            cores = {int(ln.split()[0][3:]): _busy(_stat_fields(ln)) for ln in lines[1:] if ln[:3] == "cpu"}
            return total, cores, _own_jiffies("/proc/self/stat"), _own_jiffies("/proc/thread-self/stat")
        except (OSError, ValueError, IndexError):
            return None

    def start(self) -> None:
        self._before, self._t0 = self._read(), time.perf_counter()

    def stop(self) -> Load | None:
        short = MIN_WINDOW_S - (time.perf_counter() - self._t0)
        if short > 0:  # /proc/stat counts in jiffies: a window of a few ms would read as no load
            time.sleep(short)  # other work on the core takes it meanwhile: it shows
        after, seconds = self._read(), max(time.perf_counter() - self._t0, 1e-3)
        if self._before is None or after is None:
            return None
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        (t0, c0, p0, th0), (t1, c1, p1, th1) = self._before, after
        machine = max(0.0, ((t1 - t0) - (p1 - p0)) / hz / seconds)
        if self.cpu is None or self.cpu not in c1:
            return Load(near=machine, machine=machine)
        near = (c1[self.cpu] - c0[self.cpu]) - (th1 - th0)
        near += sum(c1.get(c, 0) - c0.get(c, 0) for c in self.siblings)
        return Load(near=max(0.0, near / hz / seconds), machine=machine)


def quiet_measurement(measure, max_load: float, retries: int, cpu: int | None = None):
    """Run ``measure()`` (which returns per-round samples) until the load where it runs stays
    within ``max_load`` cores (LoadMeter: near the pinned core ``cpu``, else on the machine; a
    busy neighbour core slowed figures here by up to 30 %). Retries with growing pauses; returns
    (rounds, load, quiet) of the quietest attempt, ``quiet`` False when none was quiet enough:
    the caller must not keep such a figure as if it were."""
    meter = LoadMeter(cpu)
    best = None
    for attempt in range(retries + 1):
        meter.start()
        rounds = measure()
        load = meter.stop()
        if load is None:
            return rounds, Load(0.0, 0.0), True
        if best is None or load.near < best[1].near:
            best = (rounds, load)
        if load.near <= max_load:
            return rounds, load, True
        time.sleep(0.2 * (attempt + 1))
    return best[0], best[1], False


def time_calls(
    call, warmup: int, runs: int, rounds: int = 1, tolerance: float = 0.05, timed: bool = False
) -> list[list[float]]:
    """Milliseconds of ``runs`` calls after ``warmup`` untimed ones, in ``rounds`` rounds
    (wall clock, or ``timed``: the call returns its own milliseconds, e.g. from CUDA events).

    A shared machine has bursts of interference that slow a whole stretch of calls. When the
    round medians disagree by more than ``tolerance``, rounds are added (up to 3x ``rounds``),
    so the median of round medians (LatencyResult.from_rounds) is taken from quiet stretches.
    """
    for _ in range(warmup):
        call()
    per_round = max(1, runs // rounds)
    result: list[list[float]] = []
    while True:
        samples = []
        for _ in range(per_round):
            if timed:
                samples.append(call())
                continue
            start = time.perf_counter_ns()
            call()
            samples.append((time.perf_counter_ns() - start) / 1e6)
        result.append(samples)
        if len(result) < rounds:
            continue
        medians = sorted(statistics.median(r) for r in result)
        spread = (medians[-1] - medians[0]) / statistics.median(medians)
        if spread <= tolerance or len(result) >= 3 * rounds:
            return result

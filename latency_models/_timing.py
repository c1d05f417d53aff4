"""Timing discipline shared by the measuring profilers: one core, quiet machine, rounds of
calls, and the one ``measure()`` of a profiler that times modules."""

from __future__ import annotations

import abc
import contextlib
import os
import statistics
import time
from typing import Any

from latency_models._base import LatencyResult, input_shape_for
from search_spaces.arch import Arch
from search_spaces.networks import build_model


class ModuleProfiler(abc.ABC):
    """Base of the profilers that time a module (``measure_module``, the ``ModuleTimer``
    capability): ``measure(arch, model)`` times ``model`` (or a fresh network of ``arch`` where
    none is given, or where the profiler's ``image_size`` setting asks for another resolution)."""

    measured = True
    image_size: int | None = None

    def measure(self, arch: Arch, model: Any = None) -> LatencyResult:
        sized = input_shape_for(arch, self.image_size)
        model = build_model(sized) if model is None or sized is not arch else model
        return self.measure_module(model, sized.input_shape)

    @abc.abstractmethod
    def measure_module(self, model: Any, input_shape: tuple[int, ...]) -> LatencyResult:
        """Time ``model`` on inputs of ``(batch_size, *input_shape)``."""


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


def _busy_jiffies_elsewhere() -> int | None:
    """CPU time (jiffies) the whole machine spent busy, minus this process's own; None where
    /proc is not there."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal - int(own[11]) - int(own[12])  # utime, stime


def quiet_measurement(measure, max_load: float, retries: int):
    """Run ``measure()`` (which returns per-round samples) while the rest of the machine is
    quiet: other processes' CPU load during the run, in cores, must stay within ``max_load``
    (a busy neighbour core slowed figures here by up to 30 %). Retries with growing pauses;
    returns (rounds, load) of the quietest attempt."""
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    best = None
    for attempt in range(retries + 1):
        before, start = _busy_jiffies_elsewhere(), time.perf_counter()
        rounds = measure()
        after, seconds = _busy_jiffies_elsewhere(), time.perf_counter() - start
        if before is None or after is None:
            return rounds, 0.0
        load = max(0.0, (after - before) / hz / max(seconds, 1.0 / hz))
        if best is None or load < best[1]:
            best = (rounds, load)
        if load <= max_load:
            break
        time.sleep(0.2 * (attempt + 1))
    return best


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

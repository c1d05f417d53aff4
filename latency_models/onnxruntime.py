"""Measured latency on ONNX Runtime: export, warm up, time ``runs`` single calls."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from typing import Any

import numpy as np

from latency_models._base import LatencyResult, input_shape_for, register_profiler
from nas.arch import ArchConfig


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


@register_profiler("onnxruntime")
class OnnxRuntimeProfiler:
    """ONNX Runtime on CPU, or any execution provider given in ``providers`` (e.g.
    ``[CUDAExecutionProvider]``; refused where this onnxruntime build lacks it).

    ``threads=1`` and ``pin_cpu=auto`` by default: on a small shared machine two intra-op
    threads gave a CV of up to 64 %, one thread about 1 %, and pinning the timing thread to one
    core removed most of the remaining bursts. A measurement taken while other processes kept
    more than ``max_background_load`` cores busy is repeated (up to ``retries`` times); the
    load seen is recorded with the figure (BENCHMARKS.md).
    """

    name = "onnxruntime"
    unit = "ms"
    measured = True

    def __init__(
        self,
        threads: int = 1,
        batch_size: int = 1,
        image_size: int | None = None,
        warmup: int = 20,
        runs: int = 100,
        rounds: int = 5,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        pin_cpu: int | str | None = "auto",
        max_background_load: float = 0.25,
        retries: int = 3,
    ) -> None:
        if threads < 1 or batch_size < 1 or warmup < 0 or runs < 1 or rounds < 1:
            raise ValueError("profiler: threads, batch_size, runs >= 1, warmup >= 0, rounds >= 1")
        self.rounds = min(rounds, runs)
        if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
            raise ValueError(f"profiler.image_size: expected a positive int or null, got {image_size!r}")
        self.threads, self.batch_size, self.warmup, self.runs = threads, batch_size, warmup, runs
        self.image_size = image_size
        import onnxruntime as ort

        available = ort.get_available_providers()
        missing = [p for p in providers if p not in available]
        if missing:  # ORT would silently fall back to another provider: refuse instead
            raise ValueError(f"profiler.providers: {missing} not available here; available: {available}")
        self.providers = list(providers)
        self.pin_cpu = pin_cpu
        self.max_background_load, self.retries = max_background_load, retries
        self._cpu = resolve_cpu(pin_cpu) if threads == 1 else None

    def settings(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "batch_size": self.batch_size,
            "image_size": self.image_size,
            "warmup": self.warmup,
            "runs": self.runs,
            "rounds": self.rounds,
            "providers": self.providers,
            "pin_cpu": self.pin_cpu,
            "max_background_load": self.max_background_load,
            "retries": self.retries,
        }

    def session(self, onnx_bytes: bytes):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        return ort.InferenceSession(onnx_bytes, options, providers=self.providers)

    def measure(self, arch: ArchConfig, model: Any = None) -> LatencyResult:
        from search_spaces.layers import build_model

        sized = input_shape_for(arch, self.image_size)
        model = build_model(sized) if model is None or sized is not arch else model
        return self.measure_module(model, sized.input_shape)

    def measure_module(self, model: Any, input_shape: tuple[int, ...]) -> LatencyResult:
        """Export ``model`` (input ``(batch_size, *input_shape)``) and time it."""
        from latency_models.lock import computing, measuring
        from nas.onnx_io import to_onnx

        with computing():  # export and graph optimisation: never beside another's measurement
            session = self.session(to_onnx(model, input_shape))
        shape = (self.batch_size, *input_shape)
        feed = {"images": np.random.default_rng(0).random(shape, dtype=np.float32)}

        with measuring(), pinned(self._cpu):
            rounds, load = quiet_measurement(
                lambda: time_calls(lambda: session.run(None, feed), self.warmup, self.runs, self.rounds),
                self.max_background_load,
                self.retries,
            )
        return LatencyResult.from_rounds(
            rounds,
            unit="ms",
            n_warmup=self.warmup,
            batch_size=self.batch_size,
            input_shape=input_shape,
            background_load=round(load, 3),
        )

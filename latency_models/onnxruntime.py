"""Measured latency on ONNX Runtime: export, warm up, time ``runs`` single calls."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Literal

from infra.locks import MACHINE, computing, measuring, measuring_on_slot, slot_lock
from latency_models._base import LatencyResult, register_profiler
from latency_models._timing import ModuleProfiler, resolve_cpu, slot_cores
from latency_models.hardware import device_lock
from latency_models.onnx_io import to_onnx
from latency_models.quantize import (
    QUANTIZE_CHOICES,
    SCHEME,
    CalibrationImages,
    QuantizedModel,
    quantize_int8,
)
from nas_agent.measure import OrtSettings, check_providers, session, time_session


@register_profiler("onnxruntime")
class OnnxRuntimeProfiler(ModuleProfiler):
    """ONNX Runtime on CPU, or any execution provider given in ``providers`` (e.g.
    ``[CUDAExecutionProvider]``; refused where this onnxruntime build lacks it).

    ``threads=1`` and ``pin_cpu=auto`` by default: on a small shared machine two intra-op
    threads gave a CV of up to 64 %, one thread about 1 %, and pinning the timing thread to one
    core removed most of the remaining bursts. A measurement taken while other processes kept
    more than ``max_background_load`` cores busy where it ran (the pinned core and its SMT
    siblings) is repeated (up to ``retries`` times); the load seen is recorded with the figure,
    and a figure never measured within the limit is flagged (``quiet`` false: the latency table
    does not keep it, the report shows it) (BENCHMARKS.md).

    ``slots``: 0 measures alone on the whole machine (no computation anywhere meanwhile); N > 0
    measures on N slots at once, each pinned to a physical core of its own whose SMT siblings
    stay free, while the search's computation runs on the other cores (``reserved_cores``:
    search workers keep off them); ``auto`` chooses 0 on small machines and a quarter of the
    physical cores on large ones. How measurements are scheduled, not what they measure: not
    part of the settings that key a figure (slot figures match one-at-a-time ones, BENCHMARKS.md).

    ``quantize=int8``: each candidate is measured as it would ship quantized: exported, statically
    quantized (latency_models.quantize: QDQ, calibrated on ``calibration_images`` images given
    through ``calibrate_with``) and timed alike. Its settings then say so (and name the scheme),
    so int8 figures are keyed apart from float ones in the latency table and the study;
    ``quantize=none`` leaves the settings, and so every float figure's key, as they were.
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
        slots: int | str = "auto",
        quantize: Literal["none", "int8"] = "none",
        calibration_images: int = 256,
    ) -> None:
        if threads < 1 or batch_size < 1 or warmup < 0 or runs < 1 or rounds < 1:
            raise ValueError("profiler: threads, batch_size, runs >= 1, warmup >= 0, rounds >= 1")
        self.rounds = min(rounds, runs)
        if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
            raise ValueError(f"profiler.image_size: expected a positive int or null, got {image_size!r}")
        self.threads, self.batch_size, self.warmup, self.runs = threads, batch_size, warmup, runs
        self.image_size = image_size
        if quantize not in QUANTIZE_CHOICES:
            raise ValueError(
                f"profiler.quantize: expected one of {', '.join(QUANTIZE_CHOICES)}, got {quantize!r}"
            )
        if (
            isinstance(calibration_images, bool)
            or not isinstance(calibration_images, int)
            or calibration_images < 1
        ):
            raise ValueError(
                f"profiler.calibration_images: expected an integer >= 1, got {calibration_images!r}"
            )
        self.quantize, self.calibration_images = quantize, calibration_images
        self._calibration: CalibrationImages | None = None
        self._last: tuple[Any, tuple[int, ...], QuantizedModel] | None = None  # the last model quantized
        try:  # ORT would silently fall back to another provider: refuse instead
            self.providers = check_providers(providers)
        except ValueError as e:
            raise ValueError(f"profiler.{e}") from None
        # On a GPU provider (its device 0) the measurement holds that GPU's lock; else the machine's.
        on_gpu = any(p.split("ExecutionProvider")[0] in ("CUDA", "Tensorrt", "ROCM") for p in providers)
        self._lock = device_lock("cuda:0") if on_gpu else MACHINE
        self.pin_cpu = pin_cpu
        self.max_background_load, self.retries = max_background_load, retries
        self._cpu = resolve_cpu(pin_cpu) if threads == 1 else None
        on_cpu = not on_gpu and threads == 1 and pin_cpu not in (None, "none", "null")
        self.slots = slots
        self._slots = slot_cores(slots) if on_cpu else []  # each slot's logical CPUs, timed on the first
        self._slot_locks = [slot_lock(min(group)) for group in self._slots]

    def reserved_cores(self) -> set[int]:
        """The cores this profiler's measurement slots use (computation keeps off them)."""
        return set().union(*self._slots)

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
        } | self._quantize_settings()

    def _quantize_settings(self) -> dict[str, Any]:
        if self.quantize == "none":
            return {}
        return {"quantize": self.quantize, "calibration_images": self.calibration_images, "scheme": SCHEME}

    def quantization(self) -> str | None:
        """The deployment measured: ``int8``, or None (the float model)."""
        return None if self.quantize == "none" else self.quantize

    def calibrate_with(self, calibration: CalibrationImages) -> None:
        """The images int8 models are calibrated on (the first ``calibration_images``)."""
        self._calibration = CalibrationImages(
            calibration.images[: self.calibration_images], calibration.source
        )
        self._last = None

    def quantized(self, model: Any, input_shape: tuple[int, ...]) -> QuantizedModel:
        """``model`` exported and quantized as measured: calibrated on the images given through
        ``calibrate_with`` where they fit ``input_shape``, else on noise (enough for timing).
        The last result is kept, so the caller's scoring and the measurement of one model
        quantize it once."""
        if self._last is not None and self._last[0] is model and self._last[1] == tuple(input_shape):
            return self._last[2]
        calibration = self._calibration
        if calibration is None or calibration.input_shape != tuple(input_shape):
            calibration = CalibrationImages.noise(tuple(input_shape), min(self.calibration_images, 64))
        result = quantize_int8(to_onnx(model, input_shape), calibration)
        self._last = (model, tuple(input_shape), result)
        return result

    def session(self, onnx_bytes: bytes):
        return session(onnx_bytes, self.threads, self.providers)

    def timing(self) -> OrtSettings:
        """How this profiler times a model (what an agent is asked to do alike)."""
        keys = ("threads", "batch_size", "warmup", "runs", "rounds", "providers", "pin_cpu")
        return OrtSettings(
            **{k: getattr(self, k) for k in keys},
            max_background_load=self.max_background_load,
            retries=self.retries,
        )

    def measure_module(self, model: Any, input_shape: tuple[int, ...]) -> LatencyResult:
        """Export ``model`` (input ``(batch_size, *input_shape)``) and time it."""

        started = time.perf_counter()
        with computing():  # export, quantization and graph optimisation: never beside a measurement
            onnx_bytes = (
                to_onnx(model, input_shape)
                if self.quantize == "none"
                else self.quantized(model, input_shape).onnx
            )
            sess = self.session(onnx_bytes)
        exported = time.perf_counter()
        shape = (self.batch_size, *input_shape)
        with contextlib.ExitStack() as held:
            if self._slots:
                cpu = min(self._slots[held.enter_context(measuring_on_slot(self._slot_locks))])
            else:
                held.enter_context(measuring(self._lock))
                cpu = self._cpu
            timing_started = time.perf_counter()
            timed = time_session(sess, shape, self.timing(), cpu)
        rounds, load, quiet = timed.rounds, timed.load, timed.quiet
        done = time.perf_counter()
        return LatencyResult.from_rounds(
            rounds,
            unit="ms",
            n_warmup=self.warmup,
            batch_size=self.batch_size,
            input_shape=input_shape,
            background_load=round(load.near, 3),
            machine_load=round(load.machine, 3),
            quiet=quiet,
            seconds={
                "export": round(exported - started, 4),
                "wait": round(timing_started - exported, 4),
                "timing": round(done - timing_started, 4),
                "attempts": timed.attempts,
            },
        )

"""An ONNX model timed on ONNX Runtime: the session options and the timed calls that the local
profiler (latency_models.onnxruntime) and a measurement agent both use, so a figure taken on a
target device follows exactly the discipline of one taken here (nas_agent.timing)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from nas_agent.locks import measuring_alone
from nas_agent.timing import Load, pinned, quiet_measurement, resolve_cpu, time_calls


@dataclass(frozen=True)
class Timed:
    """What a measurement gives: milliseconds per call in rounds, the load seen meanwhile, and
    whether it was measured within the load limit."""

    rounds: list[list[float]]
    load: Load
    quiet: bool
    attempts: int = 1  # timings taken (more where the load was above the limit)


@dataclass(frozen=True)
class OrtSettings:
    """How a model is timed (the settings of latency_models.onnxruntime that change a figure,
    but the input shape, which comes with the model)."""

    threads: int = 1
    batch_size: int = 1
    warmup: int = 20
    runs: int = 100
    rounds: int = 5
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    pin_cpu: int | str | None = "auto"
    max_background_load: float = 0.25
    retries: int = 3

    def __post_init__(self) -> None:
        counts = {"threads": 1, "batch_size": 1, "warmup": 0, "runs": 1, "rounds": 1, "retries": 0}
        for key, low in counts.items():
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{key}: expected an integer >= {low}, got {value!r}")
        if not isinstance(self.max_background_load, (int, float)) or self.max_background_load < 0:
            raise ValueError(f"max_background_load: expected a number >= 0, got {self.max_background_load!r}")
        names = self.providers
        if not isinstance(names, (list, tuple)) or not all(isinstance(p, str) for p in names):
            raise ValueError(f"providers: expected a list of provider names, got {self.providers!r}")
        pin = self.pin_cpu
        core = isinstance(pin, int) and not isinstance(pin, bool) and pin >= 0
        if not (core or pin in (None, "auto", "none", "null")):
            raise ValueError(f"pin_cpu: expected auto, null or a core number, got {pin!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OrtSettings:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown timing settings {unknown}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"providers": list(self.providers)}


def check_providers(providers: list[str] | tuple[str, ...]) -> list[str]:
    """``providers`` where this onnxruntime build has them all; ValueError naming the missing
    ones otherwise (ORT would silently fall back to another provider)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise ValueError(f"providers: {missing} not available here; available: {available}")
    return list(providers)


def session(onnx_bytes: bytes, threads: int, providers: list[str]):
    """An inference session of ``threads`` intra-op threads, sequential, fully optimised."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, options, providers=providers)


def time_session(
    sess: Any,
    shape: tuple[int, ...],
    settings: OrtSettings,
    cpu: int | None,
) -> Timed:
    """Time ``sess`` on one fixed random input of ``shape`` (input ``images``), the calling thread
    pinned to ``cpu``: ``warmup`` calls, then ``runs`` calls in ``rounds`` rounds, repeated while
    the load near ``cpu`` exceeds ``max_background_load`` (up to ``retries`` times)."""
    feed = {"images": np.random.default_rng(0).random(shape, dtype=np.float32)}

    attempts = 0

    def timed() -> list[list[float]]:
        nonlocal attempts
        attempts += 1
        return time_calls(lambda: sess.run(None, feed), settings.warmup, settings.runs, settings.rounds)

    with pinned(cpu):
        rounds, load, quiet = quiet_measurement(timed, settings.max_background_load, settings.retries, cpu)
    return Timed(rounds=rounds, load=load, quiet=quiet, attempts=attempts)


def measure_onnx(onnx_bytes: bytes, input_shape: tuple[int, ...], settings: OrtSettings) -> Timed:
    """A whole measurement as the local CPU profiler takes one alone on its machine (slots
    aside): session built, then timed under the machine's exclusive measurement lock."""
    providers = check_providers(settings.providers)
    sess = session(onnx_bytes, settings.threads, providers)
    cpu = resolve_cpu(settings.pin_cpu) if settings.threads == 1 else None
    with measuring_alone():
        return time_session(sess, (settings.batch_size, *input_shape), settings, cpu)

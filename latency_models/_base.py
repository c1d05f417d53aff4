"""The LatencyProfiler contract, its optional capabilities, its result type and the registry.

A profiler turns an architecture (search_spaces.arch.Arch) into a LatencyResult. Contract:

* ``name`` -- registry name; ``unit`` -- unit of the result ("ms" for measured time, or the
  proxy's unit such as "MFLOPs").
* ``settings()`` -- everything that changes the figure (threads, batch size, runs, ...). Stored
  with every trial; together with the hardware fingerprint it says what a figure is valid for.
* ``measure(arch, model=None)`` -- the figure for ``arch``. ``model`` is the static network
  when the caller already has it (e.g. extracted from the supernet); a profiler must not depend
  on its weights, so it may build a fresh one with ``search_spaces.networks.build_model``.
* ``measured`` -- True for a profiler that times real runs: its figures hold only for the
  hardware fingerprint they were taken on, and are cached in SQL (latency_models.cache).

Optional capabilities, each a Protocol below (callers ask the helpers, never a profiler's name):

* ``ModuleTimer`` -- ``measure_module(module, input_shape)``: times a bare module. Every measured
  profiler offers it (the learned predictor times single blocks with it).
* ``HardwareBound`` -- ``hardware()``: the (id, fingerprint) its figures hold for, for a profiler
  that is not measured but valid on one machine only (a predictor fitted there). Without it:
  this machine for measured profilers, any machine for proxies (``hardware_for``).
* ``SelfChecking`` -- a model of latency that checks itself: ``wants_measurement(arch)`` says
  which architectures the caller should also measure with its ``reference`` profiler, and
  ``add_measurement(arch, ms)`` takes the figure back.
* ``Quantizing`` (in latency_models.quantize) -- a profiler that measures a quantized deployment
  (ONNX Runtime's ``quantize=int8``): its calibration images come through ``calibrate_with``,
  and ``quantized(model, input_shape)`` hands out the int8 model it times.

Lifecycle: the registry builds a profiler from its settings (``create_profiler``); callers
measure through ``measure_arch``, which looks figures up in and stores them to the latency
table (``LatencyCache``) it is given, and makes that table the current one (``latency_table()``)
while the profiler runs, so a profiler that measures on its own (the predictor's blocks) uses the
same table. A conformance check for new profilers is ``latency_models.conformance.check_profiler``.

Profilers are found by name: built-ins register with ``@register_profiler``; other installed
packages add theirs through the ``nas.latency_models`` entry-point group.
"""

from __future__ import annotations

import contextvars
import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from latency_models.hardware import fingerprint, fingerprint_id
from search_spaces.arch import Arch, ArchError

ENTRY_POINT_GROUP = "nas.latency_models"


@dataclass(frozen=True)
class LatencyResult:
    median: float
    p90: float
    mean: float
    std: float
    unit: str = "ms"
    n_warmup: int = 0
    n_runs: int = 1
    batch_size: int = 1
    input_shape: tuple[int, ...] = ()  # without the batch axis
    background_load: float = 0.0  # other work's CPU load (cores) where it was measured
    machine_load: float | None = None  # other processes' load on the whole machine meanwhile
    quiet: bool = True  # False: never measured within the profiler's load limit (a flagged figure)
    spread: float | None = None  # std / mean of the round medians: the figure's own repeatability
    seconds: dict[str, float] | None = None  # where a measurement's time went (export, wait, timing)

    @property
    def steadiness(self) -> float:
        """How far the figure (a median) would move if measured again: ``spread`` where it was
        measured in rounds, else the per-call ``cv`` (which a few slow calls dominate)."""
        return self.spread if self.spread is not None else self.cv

    @property
    def cv(self) -> float:
        """Coefficient of variation (std / mean); 0 for deterministic proxies."""
        return self.std / self.mean if self.mean else 0.0

    @classmethod
    def from_samples(cls, samples: Sequence[float], **kwargs: Any) -> LatencyResult:
        ordered = sorted(samples)
        p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
        return cls(
            median=statistics.median(ordered),
            p90=p90,
            mean=statistics.fmean(ordered),
            std=statistics.pstdev(ordered) if len(ordered) > 1 else 0.0,
            n_runs=len(ordered),
            **kwargs,
        )

    @classmethod
    def from_rounds(cls, rounds: Sequence[Sequence[float]], **kwargs: Any) -> LatencyResult:
        """Median of the round medians (robust to a burst that slows one round); p90, mean and
        spread over all calls."""
        result = cls.from_samples([x for r in rounds for x in r], **kwargs)
        medians = [statistics.median(r) for r in rounds]
        median = statistics.median(medians)
        mean = statistics.fmean(medians)
        spread = statistics.pstdev(medians) / mean if len(medians) > 1 and mean > 0 else None
        return dataclasses.replace(result, median=median, p90=max(result.p90, median), spread=spread)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"input_shape": list(self.input_shape), "cv": self.cv}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyResult:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**fields | {"input_shape": tuple(data.get("input_shape", ()))})


@runtime_checkable
class LatencyProfiler(Protocol):
    """What every profiler is (see the module docstring)."""

    name: str
    unit: str
    measured: bool

    def settings(self) -> dict[str, Any]: ...

    def measure(self, arch: Arch, model: Any = None) -> LatencyResult: ...


@runtime_checkable
class ModuleTimer(Protocol):
    """A measured profiler that also times a bare module (a block of the learned predictor)."""

    def measure_module(self, module: Any, input_shape: tuple[int, ...]) -> LatencyResult: ...


@runtime_checkable
class ReservesCores(Protocol):
    """A profiler that measures on cores of its own while computation goes on elsewhere
    (measurement slots): search workers keep off ``reserved_cores()``."""

    def reserved_cores(self) -> set[int]: ...


def reserved_cores(profiler: LatencyProfiler) -> set[int]:
    """The cores computation must keep off for ``profiler``'s measurements (none for most)."""
    return profiler.reserved_cores() if isinstance(profiler, ReservesCores) else set()


@runtime_checkable
class HardwareBound(Protocol):
    """A profiler whose figures hold on the hardware it names (not measured, not a proxy)."""

    def hardware(self) -> tuple[str, dict[str, Any]]: ...


@runtime_checkable
class SelfChecking(Protocol):
    """A model of latency that is checked, on the architectures it asks for, against the
    measuring profiler ``reference``, and learns from those measurements."""

    reference: LatencyProfiler

    def wants_measurement(self, arch: Arch) -> bool: ...

    def add_measurement(self, arch: Arch, measured_ms: float) -> None: ...


def contract_gaps(obj: Any) -> list[str]:
    """What ``obj`` lacks of the LatencyProfiler contract (empty for a profiler)."""
    return [a for a in ("name", "unit", "measured", "settings", "measure") if not hasattr(obj, a)]


def hardware_for(profiler: LatencyProfiler) -> tuple[str, dict[str, Any]]:
    """(id, fingerprint) of the hardware a figure of ``profiler`` holds for: its own where it
    names one, this machine's for measured profilers, "any" for proxies."""
    if isinstance(profiler, HardwareBound):
        return profiler.hardware()
    if profiler.measured:
        return fingerprint_id(), fingerprint()
    return "any", {}


def can_time_modules(profiler: LatencyProfiler) -> bool:
    """Whether ``profiler`` measures time and can time a bare module (what fitting a predictor needs)."""
    return profiler.measured and isinstance(profiler, ModuleTimer)


def checks_itself(profiler: LatencyProfiler) -> bool:
    """Whether ``profiler`` is a model to be checked against measurements (``SelfChecking``)."""
    return isinstance(profiler, SelfChecking)


_TABLE: contextvars.ContextVar[Any] = contextvars.ContextVar("latency_table", default=None)


def latency_table() -> Any:
    """The latency table (LatencyCache) of the ``measure_arch`` call in progress, or None."""
    return _TABLE.get()


_REGISTRY: dict[str, Callable[..., LatencyProfiler]] = {}


def register_profiler(name: str) -> Callable:
    """Class or factory decorator: ``@register_profiler("onnxruntime")``."""

    def decorate(factory: Callable[..., LatencyProfiler]) -> Callable[..., LatencyProfiler]:
        _REGISTRY[name] = factory
        return factory

    return decorate


def _load_entry_points() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            _REGISTRY[ep.name] = ep.load()


def list_profilers() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def profiler_factory(name: str) -> Callable[..., LatencyProfiler]:
    """The class (or factory) registered as ``name``, built-in or from an installed plugin."""
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        raise KeyError(f"unknown profiler {name!r}; valid: {', '.join(list_profilers())}")
    return _REGISTRY[name]


class ProfilerFactory:
    """``create_profiler(name, **settings)``: the profiler registered as ``name``, built with
    ``settings``. The ``_target_`` of every ``profiler`` conf node; as a factory that builds by
    name it tells the config schema what a node builds (``target_for``, nas.schema's
    ``BuildsByName`` contract), so the node's settings are checked against the registered
    profiler's own signature."""

    def __call__(self, name: str, **settings: Any) -> LatencyProfiler:
        profiler = profiler_factory(name)(**settings)
        if contract_gaps(profiler):
            raise ValueError(
                f"profiler {name!r} is not a latency profiler: no {', '.join(contract_gaps(profiler))}"
            )
        return profiler

    def target_for(self, node: dict[str, Any]) -> tuple[Callable[..., LatencyProfiler], tuple[str, ...]]:
        """What ``node`` builds, and the keys consumed here (``name``)."""
        return profiler_factory(node["name"]), ("name",)


create_profiler = ProfilerFactory()


def profiler_key(profiler: LatencyProfiler) -> str:
    """What a figure depends on besides architecture and hardware: name, unit and settings."""
    import json

    return json.dumps(
        {"name": profiler.name, "unit": profiler.unit, "settings": profiler.settings()},
        sort_keys=True,
        default=str,
    )


def input_shape_for(arch: Arch, image_size: int | None) -> Arch:
    """``arch`` at the profiler's ``image_size`` setting (the deployment resolution), if any."""
    if not image_size or image_size == arch.image_size:
        return arch
    try:
        return dataclasses.replace(arch, image_size=image_size)
    except ArchError as e:
        raise ValueError(f"profiler.image_size: {image_size} does not fit {arch.summary()}: {e}") from None


def measure_arch(
    profiler: LatencyProfiler, arch: Arch, model: Any = None, cache: Any = None
) -> tuple[LatencyResult, bool]:
    """``profiler.measure(arch, model)``, through ``cache`` (a latency_models.cache.LatencyCache)
    for measured profilers, which is the current ``latency_table()`` meanwhile. Returns (result,
    True when it came from the cache)."""
    token = _TABLE.set(cache)
    try:
        if cache is None or not profiler.measured:
            return profiler.measure(arch, model), False
        return cache.measure(profiler, arch.key(), arch.to_json(), lambda: profiler.measure(arch, model))
    finally:
        _TABLE.reset(token)

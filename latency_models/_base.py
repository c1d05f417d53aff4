"""The LatencyProfiler contract, its result type and the registry.

A profiler turns an ArchConfig into a LatencyResult. Contract:

* ``name`` -- registry name; ``unit`` -- unit of the result ("ms" for measured time, or the
  proxy's unit such as "MFLOPs").
* ``settings()`` -- everything that changes the figure (threads, batch size, runs, ...). Stored
  with every trial; together with the hardware fingerprint it says what a figure is valid for.
* ``measure(arch, model=None)`` -- the figure for ``arch``. ``model`` is the static network
  when the caller already has it (e.g. extracted from the supernet); a profiler must not depend
  on its weights, so it may build a fresh one with ``search_spaces.layers.build_model``.

Profilers are found by name: built-ins register with ``@register_profiler``; other installed
packages add theirs through the ``nas.latency_models`` entry-point group.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from nas.arch import ArchConfig

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"cv": self.cv}


@runtime_checkable
class LatencyProfiler(Protocol):
    name: str
    unit: str

    def settings(self) -> dict[str, Any]: ...

    def measure(self, arch: ArchConfig, model: Any = None) -> LatencyResult: ...


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


def create_profiler(name: str, **settings: Any) -> LatencyProfiler:
    """Build the profiler registered as ``name`` with ``settings`` as keyword arguments."""
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        raise KeyError(f"unknown profiler {name!r}; valid: {', '.join(list_profilers())}")
    return _REGISTRY[name](**settings)

"""Timing discipline shared by the measuring profilers: the one ``measure()`` of a profiler that
times modules, and measurement slots. The discipline itself (one core, quiet machine, rounds of
calls) is torch-free and lives in nas_agent.timing, which a measurement agent on a target device
runs too; its names are re-exported here."""

from __future__ import annotations

import abc
import os
from typing import Any

from latency_models._base import LatencyResult, input_shape_for
from nas_agent.timing import (
    MIN_WINDOW_S,
    Load,
    LoadMeter,
    core_siblings,
    pinned,
    quiet_measurement,
    resolve_cpu,
    time_calls,
)
from search_spaces.arch import Arch
from search_spaces.networks import build_model

__all__ = [
    "MIN_WINDOW_S",
    "Load",
    "LoadMeter",
    "ModuleProfiler",
    "core_siblings",
    "pinned",
    "quiet_measurement",
    "resolve_cpu",
    "slot_cores",
    "time_calls",
]


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


SLOTS_FROM_CORES = 8  # slots=auto: measurement slots only on machines of this many physical cores


def slot_cores(slots: int | str) -> list[set[int]]:
    """The physical cores measurement slots run on, each as the set of its logical CPUs (the
    slot times on the first; its SMT siblings stay free): the last cores (away from core 0's
    interrupts), at least one physical core left to computation. ``slots`` 0: none (measure
    alone on the whole machine); ``auto``: 0 below SLOTS_FROM_CORES physical cores, else a
    quarter of them."""
    if slots not in ("auto",) and not (isinstance(slots, int) and not isinstance(slots, bool) and slots >= 0):
        raise ValueError(f"profiler.slots: expected auto or a count >= 0, got {slots!r}")
    if not hasattr(os, "sched_getaffinity"):
        return []
    allowed = os.sched_getaffinity(0)
    groups: list[set[int]] = []
    for cpu in sorted(allowed):
        if not any(cpu in g for g in groups):
            groups.append({cpu} | (core_siblings(cpu) & allowed))
    if slots == "auto":
        slots = len(groups) // 4 if len(groups) >= SLOTS_FROM_CORES else 0
    if slots > len(groups) - 1:
        raise ValueError(f"profiler.slots: {slots} slots leave no core of {len(groups)} to computation")
    return groups[len(groups) - slots :] if slots else []

"""Conformance check for LatencyProfiler implementations (built-in or plugin), as Optuna ships
tests for its storages: ``check_profiler(create_profiler("mine"), arch)`` raises AssertionError
naming the broken part of the contract (latency_models._base)."""

from __future__ import annotations

import json
from typing import Any

from latency_models._base import LatencyProfiler, LatencyResult, ModuleTimer


def check_profiler(profiler: Any, arch: Any) -> LatencyResult:
    """Check ``profiler`` against the contract on ``arch``; returns its result for ``arch``."""
    assert isinstance(profiler, LatencyProfiler), "needs name, unit, measured, settings(), measure()"
    assert isinstance(profiler.name, str) and profiler.name, "name: a non-empty str"
    assert isinstance(profiler.unit, str) and profiler.unit, "unit: a non-empty str"
    settings = profiler.settings()
    assert isinstance(settings, dict), "settings(): a dict"
    assert json.loads(json.dumps(settings)) == json.loads(json.dumps(profiler.settings())), (
        "settings(): JSON-serialisable and the same on every call (it keys the latency table)"
    )
    result = profiler.measure(arch)
    assert isinstance(result, LatencyResult), "measure(): returns a LatencyResult"
    assert result.unit == profiler.unit, f"measure(): unit {result.unit!r}, profiler's {profiler.unit!r}"
    assert result.median > 0 and result.p90 >= result.median * (1 - 1e-9), "median > 0 and p90 >= median"
    assert result.std >= 0 and result.n_runs >= 0, "std and n_runs >= 0"
    if profiler.measured:
        assert profiler.unit == "ms", "a measured profiler reports milliseconds"
        assert isinstance(profiler, ModuleTimer), "measured: offers measure_module()"
        assert result.n_runs >= 1, "measured: at least one timed run"
    restored = LatencyResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert restored == result, "LatencyResult survives the JSON round trip of the latency table"
    return result

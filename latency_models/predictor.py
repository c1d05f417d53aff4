"""Learned latency predictor for one hardware fingerprint: a measured lookup table of blocks plus
a calibration fitted on measured whole networks (nn-Meter's kernel sum, HAT's per-device model).

* Table: every distinct block (latency_models.blocks) is timed once with the measuring profiler,
  as its *marginal* cost: a chain of ``CHAIN`` copies minus one copy, divided by ``CHAIN - 1``,
  so the per-call overhead of a lone block is not counted once per block.
* Calibration: measured latency ~ w0 + sum over groups g of w_g * (table sum of group g), fitted
  by least squares on relative error over the measured samples. Refitted whenever a search
  adds measured samples (``profiler=predictor`` measures a share of its trials).

A prediction needs no export and no session: it costs microseconds (BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infra.files import atomic_path
from latency_models._base import (
    LatencyProfiler,
    LatencyResult,
    create_profiler,
    input_shape_for,
    latency_table,
    measure_arch,
    profiler_key,
    register_profiler,
)
from latency_models.blocks import GROUPS, BlockSpec, decompose
from latency_models.hardware import fingerprint, fingerprint_id
from search_spaces.arch import Arch, arch_from_dict

CHAIN = 4  # copies of a shape-preserving block timed together to get its marginal cost
FEATURES = ("intercept", "ends", "mixer", "mlp", "conv")
FORMAT_VERSION = 1


@dataclass
class Predictor:
    profiler: dict[str, Any]  # the measuring profiler: {"name", "unit", "settings"}
    hardware: dict[str, Any]  # fingerprint the table and samples were measured on
    hardware_id: str
    space: str = ""
    table: dict[str, float] = field(default_factory=dict)  # block key -> marginal ms
    samples: list[tuple[dict[str, Any], float]] = field(default_factory=list)  # (arch, measured ms)
    weights: list[float] = field(default_factory=list)

    # -- prediction ------------------------------------------------------------------------------
    def blocks(self, arch) -> list[BlockSpec]:
        """The blocks of ``arch`` at the input size the profiler measures."""
        return decompose(input_shape_for(arch, self.profiler["settings"].get("image_size")))

    def missing(self, arch) -> list[BlockSpec]:
        return [b for b in self.blocks(arch) if b.key() not in self.table]

    def features(self, arch) -> np.ndarray:
        sums = dict.fromkeys(FEATURES, 0.0) | {"intercept": 1.0}
        for block in self.blocks(arch):
            sums[GROUPS[block.kind]] += self.table[block.key()]
        return np.array([sums[f] for f in FEATURES])

    def predict(self, arch) -> float:
        """Predicted latency (ms); KeyError if a block of ``arch`` is not in the table."""
        if not self.weights:
            raise ValueError("predictor is not calibrated: fit it with measured samples first")
        return float(self.features(arch) @ np.array(self.weights))

    # -- fitting ---------------------------------------------------------------------------------
    def calibrate(self) -> None:
        """Least squares on relative error, so small and large networks count alike."""
        if not self.samples:
            raise ValueError("no measured samples to calibrate on")
        X = np.array([self.features(arch_from_dict(a)) for a, _ in self.samples])  # (S, F)
        y = np.array([m for _, m in self.samples])  # (S,)
        used = [i for i in range(X.shape[1]) if i == 0 or np.any(X[:, i])]  # e.g. no conv in a vit
        weights = np.zeros(X.shape[1])
        if len(self.samples) < 4 * len(used):  # too few to fit each group: one scale for the table
            total = np.stack([np.ones(len(y)), X[:, 1:].sum(axis=1)], axis=1)  # (S, 2)
            (intercept, scale), *_ = np.linalg.lstsq(total / y[:, None], np.ones(len(y)), rcond=None)
            weights[0], weights[1:] = intercept, scale
        else:
            solution, *_ = np.linalg.lstsq(X[:, used] / y[:, None], np.ones(len(y)), rcond=None)
            weights[used] = solution
        self.weights = weights.tolist()

    def add_sample(self, arch, measured_ms: float, recalibrate: bool = True) -> None:
        self.samples.append((arch.to_dict(), float(measured_ms)))
        if recalibrate:
            self.calibrate()

    # -- storage ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "profiler": self.profiler,
            "hardware": self.hardware,
            "hardware_id": self.hardware_id,
            "space": self.space,
            "features": list(FEATURES),
            "weights": self.weights,
            "table": self.table,
            "samples": [[a, m] for a, m in self.samples],
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically (a crash leaves the previous file)."""
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """The predictor saved at ``path``; ValueError naming the file if it is not one."""
        try:
            data = json.loads(Path(path).read_text())
            if data.get("format_version") != FORMAT_VERSION or data.get("features") != list(FEATURES):
                raise ValueError("not a predictor file of this version; fit it again")
            return cls(
                profiler=data["profiler"],
                hardware=data["hardware"],
                hardware_id=data["hardware_id"],
                space=data.get("space", ""),
                table={k: float(v) for k, v in data["table"].items()},
                samples=[(a, float(m)) for a, m in data["samples"]],
                weights=[float(w) for w in data["weights"]],
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"{path}: not a readable predictor file ({reason})") from None

    def measuring_profiler(self) -> LatencyProfiler:
        return create_profiler(self.profiler["name"], **self.profiler["settings"])


def block_subject_key(block: BlockSpec, copies: int) -> str:
    return "block:" + hashlib.sha1(f"{block.key()}x{copies}".encode()).hexdigest()


def measure_block(profiler: LatencyProfiler, block: BlockSpec, cache: Any = None) -> float:
    """Marginal cost (ms) of ``block`` in a network: shape-preserving blocks are timed as a chain
    of CHAIN copies and as one; stems, heads and downsamplers (one per network position) alone."""
    import torch

    def timed(copies: int) -> float:
        def run() -> LatencyResult:
            module = torch.nn.Sequential(*[block.build() for _ in range(copies)])
            return profiler.measure_module(module, block.input_shape)

        if cache is None:
            return run().median
        result, _ = cache.measure(profiler, block_subject_key(block, copies), f"{block.key()}x{copies}", run)
        return result.median

    if GROUPS[block.kind] == "ends":
        return timed(1)
    return max(0.0, (timed(CHAIN) - timed(1)) / (CHAIN - 1))


def fill_table(
    predictor: Predictor,
    profiler: LatencyProfiler,
    blocks: Iterable[BlockSpec],
    cache: Any = None,
    on_block: Callable[[], None] | None = None,
) -> int:
    """Measure the blocks missing from the table; returns how many were added."""
    added = 0
    for block in blocks:
        key = block.key()
        if key not in predictor.table:
            predictor.table[key] = measure_block(profiler, block, cache)
            added += 1
            if on_block:
                on_block()
    return added


def unique_samples(space, n: int, seed: int, exclude: set[str] = frozenset()) -> list:
    """``n`` distinct architectures drawn uniformly from ``space`` (seeded), none in ``exclude``."""
    rng = random.Random(seed)
    archs, seen = [], set(exclude)
    for _ in range(200 * n):
        arch = space.sample(rng)
        if arch.key() not in seen:
            seen.add(arch.key())
            archs.append(arch)
            if len(archs) == n:
                break
    return archs


def space_blocks(space, seed: int, n: int = 3000) -> list[BlockSpec]:
    """The blocks of ``n`` random members plus the extremes: in practice every block of the
    space (the test suite checks coverage on fresh samples)."""
    rng = random.Random(seed)
    members = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n)]
    blocks: dict[str, BlockSpec] = {}
    for arch in members:
        for block in decompose(arch):
            blocks.setdefault(block.key(), block)
    return list(blocks.values())


def predictor_file(folder: str | Path, space: str, profiler: LatencyProfiler) -> Path:
    """Where ``nas latency fit`` keeps the predictor of ``space`` for ``profiler`` on this
    hardware: one file per space, profiler settings and hardware."""
    settings = hashlib.sha1(profiler_key(profiler).encode()).hexdigest()[:8]
    return Path(folder) / f"{space}-{profiler.name}-{settings}-{fingerprint_id()}.json"


def find_predictor(folder: str | Path, space: str) -> Path:
    """The predictor fitted for ``space`` on this hardware in ``folder``, when there is exactly
    one (ValueError naming the key otherwise)."""
    found = sorted(Path(folder).glob(f"{space}-*-{fingerprint_id()}.json"))
    if not found:
        raise ValueError(
            f"profiler.path: no predictor for space {space!r} on this hardware in {folder}; "
            f"run: nas latency fit +space={space}"
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ValueError(f"profiler.path: several predictors for {space!r} ({names}); choose one")
    return found[0]


@register_profiler("predictor")
class PredictorProfiler:
    """Predicted latency from a fitted predictor file (``nas latency fit``).

    ``path`` names the file; without it, the predictor fitted on this hardware for ``space`` is
    taken from ``folder`` (for the measured architecture's space where ``space`` is not given).
    ``measure_fraction`` of the architectures (chosen by their key, so reproducibly) are also
    measured with the predictor's own profiler (``SelfChecking``); the search records both
    figures and the predictor recalibrates on them. Blocks the table lacks are measured once on
    first use, through the current latency table.
    """

    name = "predictor"
    unit = "ms"
    measured = False

    def __init__(
        self,
        path: str | None = None,
        folder: str | None = None,
        space: str | None = None,
        measure_fraction: float = 0.1,
        recalibrate: bool = True,
    ):
        if not 0.0 <= measure_fraction <= 1.0:
            raise ValueError(f"profiler.measure_fraction: expected 0..1, got {measure_fraction!r}")
        if path is None and folder is None:
            raise ValueError("profiler.path: no predictor file given; fit one with nas latency fit")
        self.folder, self.measure_fraction, self.recalibrate = folder, measure_fraction, recalibrate
        self.path: str | None = None
        self.predictor: Predictor | None = None
        self._reference: LatencyProfiler | None = None
        if path is not None or space is not None:
            self._load(path or find_predictor(folder, space))

    def _load(self, path: str | Path) -> Predictor:
        if not Path(path).is_file():
            raise ValueError(f"profiler.path: {str(path)!r} does not exist; fit one with nas latency fit")
        try:
            predictor = Predictor.load(path)
        except ValueError as e:
            raise ValueError(f"profiler.path: {e}") from None
        if predictor.hardware_id != fingerprint_id():
            raise ValueError(
                f"profiler.path: {path} was fitted on other hardware "
                f"({predictor.hardware.get('cpu')}, {predictor.hardware_id}); fit one here"
            )
        self.path, self.predictor, self._reference = str(path), predictor, None
        return predictor

    def _for(self, arch: Arch) -> Predictor:
        if self.predictor is None:
            return self._load(find_predictor(self.folder, arch.space))
        return self.predictor

    @property
    def reference(self) -> LatencyProfiler:
        """The measuring profiler the predictor was fitted with."""
        if self._reference is None:
            if self.predictor is None:
                raise ValueError("profiler.path: no predictor loaded yet")
            self._reference = self.predictor.measuring_profiler()
        return self._reference

    def hardware(self) -> tuple[str, dict[str, Any]]:
        """Valid on the machine it was fitted on, which is this one (checked when loaded)."""
        return fingerprint_id(), fingerprint()

    def settings(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "measure_fraction": self.measure_fraction,
            "recalibrate": self.recalibrate,
            "profiler": self.predictor.profiler if self.predictor else None,
            "hardware_id": fingerprint_id(),
        }

    def wants_measurement(self, arch: Arch) -> bool:
        draw = int(hashlib.sha1(f"check:{arch.key()}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return draw < self.measure_fraction

    def measure(self, arch: Arch, model: Any = None) -> LatencyResult:
        predictor = self._for(arch)
        fill_table(predictor, self.reference, predictor.missing(arch), latency_table())
        value = predictor.predict(arch)
        return LatencyResult(value, value, value, 0.0, unit="ms", n_runs=0, input_shape=arch.input_shape)

    def add_measurement(self, arch: Arch, measured_ms: float) -> None:
        self._for(arch).add_sample(arch, measured_ms, recalibrate=self.recalibrate)


def fit_samples(
    predictor: Predictor,
    profiler: LatencyProfiler,
    archs: list,
    cache: Any = None,
    on_sample: Callable[[], None] | None = None,
    save_to: Path | None = None,
) -> None:
    """Measure ``archs`` (and their blocks, interleaved, so slow drift of the machine hits table
    and samples alike) into ``predictor``; saves every 30 s when ``save_to`` is given."""
    import time

    last_save = time.monotonic()
    for arch in archs:
        fill_table(predictor, profiler, predictor.missing(arch), cache)
        result, _ = measure_arch(profiler, arch, None, cache)
        predictor.add_sample(arch, result.median, recalibrate=False)
        if on_sample:
            on_sample()
        if save_to and time.monotonic() - last_save > 30:
            predictor.save(save_to)
            last_save = time.monotonic()


def held_out_errors(
    predictor: Predictor,
    profiler: LatencyProfiler,
    archs: list,
    cache: Any = None,
    on_sample: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Predict, then measure, each of ``archs``: one row per architecture."""
    import time

    rows = []
    for arch in archs:
        added = fill_table(predictor, profiler, predictor.missing(arch), cache)
        start = time.perf_counter_ns()
        predicted = predictor.predict(arch)
        predict_us = (time.perf_counter_ns() - start) / 1e3
        start = time.perf_counter()
        measured, hit = measure_arch(profiler, arch, None, cache)
        rows.append(
            {
                "arch_key": arch.key(),
                "arch": arch.summary(),
                # Significant figures, not decimals: tiny spaces run in microseconds.
                "measured_ms": float(f"{measured.median:.6g}"),
                "predicted_ms": float(f"{predicted:.6g}"),
                "error": round(predicted / measured.median - 1, 5),
                "predict_us": round(predict_us, 1),
                "measure_s": None if hit else round(time.perf_counter() - start, 4),
                "new_blocks": added,
            }
        )
        if on_sample:
            on_sample()
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Share within ±10 %, MAPE (%), RMSE (ms), worst error, median costs."""
    errors = np.array([r["error"] for r in rows])
    measured = np.array([r["measured_ms"] for r in rows])
    predicted = np.array([r["predicted_ms"] for r in rows])
    costs = [r["measure_s"] for r in rows if r["measure_s"] is not None]
    return {
        "n": len(rows),
        "within_10pct": float(np.mean(np.abs(errors) <= 0.10)),
        "within_5pct": float(np.mean(np.abs(errors) <= 0.05)),
        "mape_pct": float(np.mean(np.abs(errors)) * 100),
        "rmse_ms": float(np.sqrt(np.mean((predicted - measured) ** 2))),
        "worst_error": float(errors[np.argmax(np.abs(errors))]),
        "predict_us": float(np.median([r["predict_us"] for r in rows])),
        "measure_s": float(np.median(costs)) if costs else float("nan"),
    }

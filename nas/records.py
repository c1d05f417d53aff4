"""What a study holds besides Optuna's own columns: one definition for every floor that writes or
reads it (the search writes, ``nas train`` writes, the report and the service read).

* Study attributes: ``STUDY_ATTR`` (what the study's figures are valid for: objectives, space,
  dataset, profiler, hardware, supernet), ``TEST_ATTR`` (front members' test top-1),
  ``SAMPLERS_ATTR``, ``FRONT_CHECK_ATTR``; and one attribute per stand-alone training run,
  keyed by ``RunRecord.key_for`` (Optuna does not let a finished trial's attributes change, so
  results are study attributes, one per run: no write races).
* Trial attributes: the names in ``TrialAttr``; ``TrialFigures`` reads the ones a listing shows.
* File names made from user text: ``file_safe`` (readable, for caches) and ``unique_file_name``
  (readable and distinct for distinct texts, for folders a route serves).

Torch-free: the service imports it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, fields
from typing import Any

STUDY_ATTR = "nas"
TEST_ATTR = "test_top1"
SAMPLERS_ATTR = "samplers"  # the samplers that filled the study, in order
FRONT_CHECK_ATTR = "front_check"  # a self-checking profiler's front, measured again


class TrialAttr:
    """Names of the user attributes a search writes on each trial."""

    ARCH = "arch"  # ArchConfig.to_dict()
    ARCH_KEY = "arch_key"
    SUMMARY = "summary"
    TOP1 = "top1"  # validation top-1 (%) with inherited weights
    ACCURACY = "accuracy"  # what the accuracy objective scored: float (top1) or int8 (INT8's top1)
    LATENCY = "latency"  # LatencyResult.to_dict(): median, unit, ...
    LATENCY_SOURCE = "latency_source"  # measured, table or computed
    PARAMS = "params"
    NONZERO_PARAMS = "nonzero_params"
    FLOPS = "flops"
    PROFILER = "profiler"
    FAIL_REASON = "fail_reason"
    REUSED_FROM = "reused_from"  # a repeated architecture: the trial whose figures it took
    INT8 = "int8"  # QuantizedAccuracy.to_dict(): top-1 of the int8 model (profiler.quantize=int8)


@dataclass(frozen=True)
class QuantizedAccuracy:
    """A model's top-1 as it ships quantized (its int8 ONNX model in ONNX Runtime, calibrated on
    images of the training split) beside its float top-1: a search trial's (validation split,
    trial attribute ``TrialAttr.INT8``) or a stand-alone training run's (also the test split,
    ``RunRecord.int8``)."""

    quantization: str  # "int8"
    top1: float  # validation top-1 (%) of the quantized model
    float_top1: float  # the same split's top-1 of the float model
    images: int  # validation images scored
    calibration: str  # what it was calibrated on
    seconds: float = 0.0  # quantizing and scoring it
    test_top1: float | None = None  # the dataset's own test split (nas train), quantized ...
    float_test_top1: float | None = None  # ... and float

    @property
    def drop(self) -> float:
        """Validation top-1 points lost to quantization (negative: gained)."""
        return self.float_top1 - self.top1

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in out.items() if v is not None} | {"drop": round(self.drop, 4)}

    @classmethod
    def from_dict(cls, value: Any) -> QuantizedAccuracy | None:
        """The record stored as ``value``, or None where there is none (a float study) or it is
        malformed (the storage may be shared)."""
        if not isinstance(value, dict):
            return None
        try:
            return cls(**{f.name: value[f.name] for f in fields(cls) if f.name in value})
        except TypeError:
            return None


@dataclass(frozen=True)
class TrialFigures:
    """The figures of a trial that a listing shows, from its user attributes (any may be missing)."""

    top1: float | None = None
    latency: dict[str, Any] | None = None
    summary: str | None = None
    params: int | None = None
    flops: int | None = None
    fail_reason: str | None = None

    KEYS = (TrialAttr.TOP1, TrialAttr.LATENCY, TrialAttr.SUMMARY, TrialAttr.PARAMS, TrialAttr.FLOPS)
    KEYS += (TrialAttr.FAIL_REASON,)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> TrialFigures:
        return cls(**{k: attrs.get(k) for k in cls.KEYS})

    def latency_median(self) -> float | None:
        return (self.latency or {}).get("median")


@dataclass(frozen=True)
class RunRecord:
    """One stand-alone training run stored with a study (``nas train``): a found model (``kind``
    trial: ``name`` is the trial number; or arch) or a timm baseline (``name`` is the model).
    ``measured`` holds a baseline's latency as its profiler measured it."""

    kind: str  # "trial", "arch" or "baseline"
    name: str
    val_top1: float | None = None
    test_top1: float | None = None
    epochs: int | None = None  # epochs it ran
    recipe: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    stopped_early: bool = False  # a scheduler stopped it: figures of its last epoch, not a result
    params: int | None = None
    measured: dict[str, Any] | None = None
    trials: list[int] = field(default_factory=list)  # every trial of this architecture it stands for
    int8: dict[str, Any] | None = None  # QuantizedAccuracy.to_dict() where the profiler quantizes
    extra: dict[str, Any] = field(default_factory=dict)  # everything else the run recorded

    PREFIXES = ("retrained:", "baseline:")

    @staticmethod
    def key_for(kind: str, name: str, init: str, recipe_key: str) -> str:
        """The study attribute of a run: found models by name per (init, recipe), baselines by
        timm name per recipe."""
        if kind == "baseline":
            return f"baseline:{name}:{recipe_key}"
        return f"retrained:{name}:{init}:{recipe_key}"

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> RunRecord:
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in value.items() if k in known}
        return cls(**kwargs, extra={k: v for k, v in value.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        kept = {k: v for k, v in out.items() if v is not None or k == "test_top1"}
        if not self.trials:  # a baseline or an architecture file stands for no trial
            kept.pop("trials")
        return self.extra | kept

    @classmethod
    def all_in(cls, study_attrs: dict[str, Any]) -> dict[str, RunRecord]:
        """Every run record among a study's attributes, by attribute name (malformed ones skipped:
        the storage may be shared)."""
        out = {}
        for key, value in sorted(study_attrs.items()):
            if key.startswith(cls.PREFIXES) and isinstance(value, dict) and {"kind", "name"} <= set(value):
                out[key] = cls.from_dict(value)
        return out

    @property
    def trial(self) -> int | None:
        """The trial number of a found model's run."""
        if self.kind != "trial":
            return None
        try:
            return int(self.name)
        except (TypeError, ValueError):
            return None

    def stands_for(self) -> list[int]:
        """The trials whose architecture this run trained: ``trials`` where recorded (a study
        where several trials found one architecture trains it once), else its own."""
        own = [self.trial] if self.trial is not None else []
        return [t for t in self.trials if isinstance(t, int)] or own

    @property
    def score(self) -> float | None:
        """Top-1 on the test split, or on the validation split where the data has none."""
        return self.test_top1 if self.test_top1 is not None else self.val_top1

    @property
    def planned_epochs(self) -> int | None:
        value = self.recipe.get("epochs") if isinstance(self.recipe, dict) else None
        return value if isinstance(value, int) else None

    @property
    def stopped(self) -> bool:
        """Ended before its recipe's epochs: not a result to compare."""
        planned = self.planned_epochs
        short = isinstance(self.epochs, int) and planned is not None and self.epochs < planned
        return bool(self.stopped_early) or short

    @property
    def state(self) -> str:
        return "stopped" if self.stopped else "complete"

    def baseline_latency(self) -> tuple[float, str] | None:
        """The (median, unit) measured for this run's own model (a baseline's), or None: a found
        model's latency is its trial's."""
        try:
            return float(self.measured["latency"]["median"]), str(self.measured["unit"])
        except (KeyError, TypeError, ValueError):
            return None


def file_safe(text: str) -> str:
    """``text`` with every run of other characters than letters, digits, ``.``, ``_``, ``-``
    replaced by one ``_`` (readable; two texts may share a result: cache folders, report files)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "data"


def unique_file_name(text: str) -> str:
    """A file name for ``text``, distinct for distinct texts: ``text`` itself where it is
    file-safe, else its safe form and a digest of the exact text."""
    safe = file_safe(text)
    if safe == text and not text.startswith("."):
        return text
    return f"{safe[:80]}~{hashlib.sha256(text.encode()).hexdigest()[:16]}"


FINAL_LATENCY_ATTR = "final_latency"  # the final measurement pass of `nas run` (FinalLatencies)
RUN_PHASES_ATTR = "run_phases"  # `nas run`'s phase wall times, one entry per invocation
SEARCH_PHASES_ATTR = "search_phases"  # `nas search`'s wall time by part, one entry per invocation


@dataclass(frozen=True)
class FinalLatencies:
    """Latencies measured alike once trainings have ended (``nas run``'s final pass): every
    retrained found model and every baseline, one at a time, by one profiler on one machine, each
    retried until quiet (or flagged). ``figures`` maps ``trial:<n>`` / ``baseline:<name>`` to a
    LatencyResult dict."""

    profiler: dict[str, Any] = field(default_factory=dict)  # name, unit, settings
    hardware: str | None = None
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)

    @staticmethod
    def trial_key(number: int) -> str:
        return f"trial:{number}"

    @staticmethod
    def baseline_key(name: str) -> str:
        return f"baseline:{name}"

    @classmethod
    def of(cls, study_attrs: dict[str, Any]) -> FinalLatencies:
        value = study_attrs.get(FINAL_LATENCY_ATTR)
        if not isinstance(value, dict):
            return cls()
        figures = value.get("figures") if isinstance(value.get("figures"), dict) else {}
        return cls(value.get("profiler") or {}, value.get("hardware"), figures)

    def to_dict(self) -> dict[str, Any]:
        return {"profiler": self.profiler, "hardware": self.hardware, "figures": self.figures}

    def median(self, key: str) -> float | None:
        figure = self.figures.get(key)
        return figure.get("median") if isinstance(figure, dict) else None

    @staticmethod
    def steadiness(figure: dict[str, Any]) -> float | None:
        """A stored figure's repeatability: the spread of its round medians where it was measured
        in rounds, else its per-call CV (LatencyResult.steadiness, as stored)."""
        spread = figure.get("spread")
        return spread if spread is not None else figure.get("cv")

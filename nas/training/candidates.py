"""What ``nas train`` trains: candidates, each a model to build and what it is.

A candidate's class is its contract, so no caller asks what kind it is:

* ``kind``: the stored record's kind (``nas.records.RunRecord``: trial, arch or baseline);
* ``init_for(init)``: how it starts; only a study's trial has supernet weights to inherit;
* ``measures_latency``: whether ``nas train`` measures its latency (a timm baseline; a found
  model has the study's figure) and ``measure(profiler, shape)`` to do it;
* ``label``: its name in the table;
* ``record_key(init, recipe)`` and ``record(result)``: the study attribute its result is
  stored under and what is stored there (the stored format: one definition, ``RunRecord``);
* ``final_key()`` and ``timer(profiler, shape)``: its entry in ``nas run``'s final measurement
  pass and how that pass times it (an architecture by the profiler; a timm model as a module).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from latency_models._base import can_time_modules
from nas.records import FinalLatencies, RunRecord
from nas.training.loop import Retrained
from nas.training.recipe import RetrainRecipe
from search_spaces.arch import Arch
from search_spaces.networks import build_model


@dataclass
class Candidate:
    """One model to train: its name (the record's key), how to build it (untrained, or with
    inherited weights) and the figures known before training. A subclass says what it is."""

    name: str
    build: Callable[[], nn.Module]
    inherited_top1: float | None = None  # top-1 with the supernet's weights (a study's trial)
    latency: float | None = None  # in the unit of the study's (or the measuring) profiler
    measured: dict[str, Any] | None = None  # what ``measure`` found: the profiler and its result

    kind: ClassVar[str]
    measures_latency: ClassVar[bool] = False

    def init_for(self, init: str) -> str:
        """How its training starts when the command asks for ``init``: from scratch, unless the
        candidate has weights to inherit."""
        return "scratch"

    @property
    def label(self) -> str:
        return self.name

    def record_key(self, init: str, recipe: RetrainRecipe) -> str:
        """The study user attribute that holds its result: found models by name per (init,
        recipe), baselines by timm name per recipe. Optuna does not let a finished trial's
        attributes change, so results are study attributes, one per run (no write races)."""
        return RunRecord.key_for(self.kind, self.name, self.init_for(init), recipe.key())

    def record(self, result: Retrained) -> RunRecord:
        """What is stored under ``record_key``: the run's result, its kind and name, and the
        latency measured here."""
        values = result.to_dict() | {"kind": self.kind, "name": self.name}
        if self.measured is not None:
            values["measured"] = self.measured
        return RunRecord.from_dict(values)

    def final_key(self) -> str:
        return FinalLatencies.baseline_key(self.name)

    def timer(self, profiler: Any, shape: tuple[int, ...]) -> Callable[[], Any] | None:
        """A call that measures it once by ``profiler`` (None where the profiler cannot time a
        bare module)."""
        if not can_time_modules(profiler):
            return None
        model = self.build().eval()
        return lambda: profiler.measure_module(model, shape)

    def measure(self, profiler: Any, shape: tuple[int, ...]) -> None:
        """Its latency for ``shape`` inputs by ``profiler``, one that times bare modules
        (``latency_models._base.can_time_modules``)."""
        result = profiler.measure_module(self.build().eval(), shape)
        self.latency = result.median
        self.measured = {
            "name": profiler.name,
            "unit": profiler.unit,
            "settings": profiler.settings(),
            "latency": result.to_dict(),
        }


@dataclass
class StudyTrial(Candidate):
    """A trial of the study: from scratch, or from its supernet weights (``init=inherit``).
    ``same`` are the other trials that found the same architecture: trained once, for all."""

    same: tuple[int, ...] = ()
    arch: Arch | None = None

    kind: ClassVar[str] = "trial"

    def final_key(self) -> str:
        return FinalLatencies.trial_key(int(self.name))

    def timer(self, profiler: Any, shape: tuple[int, ...]) -> Callable[[], Any] | None:
        return lambda: profiler.measure(self.arch)

    def record(self, result: Retrained) -> RunRecord:
        record = super().record(result)
        return dataclasses.replace(record, trials=[int(self.name), *self.same])

    def init_for(self, init: str) -> str:
        return init

    @property
    def label(self) -> str:
        also = f" (= {', '.join(map(str, self.same))})" if self.same else ""
        return f"trial {self.name}{also}"


@dataclass
class ArchFile(Candidate):
    """An architecture file (``arch=FILE``, e.g. an export's arch.yaml), from scratch."""

    arch: Arch | None = None

    kind: ClassVar[str] = "arch"

    def final_key(self) -> str:
        return f"arch:{self.name}"

    def timer(self, profiler: Any, shape: tuple[int, ...]) -> Callable[[], Any] | None:
        return lambda: profiler.measure(self.arch)


@dataclass
class TimmBaseline(Candidate):
    """A timm model (``timm=NAME`` or the baselines group), from scratch; ``nas train`` measures
    its latency with the search's profiler and stores it with its result."""

    kind: ClassVar[str] = "baseline"
    measures_latency: ClassVar[bool] = True


def scratch_model(arch: Arch, seed: int, mean: torch.Tensor, std: torch.Tensor) -> nn.Module:
    """``arch`` untrained (seeded by the recipe), normalising with the training split's ``mean``
    and ``std``."""
    torch.manual_seed(seed)
    model = build_model(arch)
    model.mean.copy_(mean.view(-1, 1, 1))
    model.std.copy_(std.view(-1, 1, 1))
    return model

"""Found models against the timm baselines a user would pick, as the report states it: for each
baseline, the best found model at or under its latency and the fastest found model of at least
its top-1. Only figures that can be compared take part: models trained to the end of one recipe
(a run a scheduler stopped early is not a result), and latencies measured alike (the final pass
of ``nas run`` where there is one: every model one at a time on a quiet machine; else the
search's figures for found models and the figure ``nas train`` took for each baseline, which the
report then says)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas.records import FinalLatencies, RunRecord, TrialAttr


@dataclass(frozen=True)
class Trained:
    """A model trained to the end of the recipe, with the latency it is compared at."""

    name: str  # "trial 17" or the timm name
    top1: float
    latency: float
    trial: int | None = None
    quiet: bool = True  # False: its latency was never measured within the load limit
    cv: float | None = None  # its figure's repeatability: spread of the round medians (else per-call CV)


@dataclass(frozen=True)
class Versus:
    baseline: Trained
    best_within: Trained | None  # the highest top-1 at or under the baseline's latency
    fastest_as_good: Trained | None  # the lowest latency at or above the baseline's top-1

    def gain(self) -> float | None:
        """Top-1 points the best found model within the latency has over the baseline."""
        return None if self.best_within is None else self.best_within.top1 - self.baseline.top1

    def speedup(self) -> float | None:
        """How many times faster the fastest found model of at least the baseline's top-1 is."""
        return None if self.fastest_as_good is None else self.baseline.latency / self.fastest_as_good.latency


def compare(found: list[Trained], baselines: list[Trained]) -> list[Versus]:
    out = []
    for b in sorted(baselines, key=lambda b: b.latency):
        within = [f for f in found if f.latency <= b.latency]
        good = [f for f in found if f.top1 >= b.top1]
        out.append(
            Versus(
                b,
                max(within, key=lambda f: (f.top1, -f.latency)) if within else None,
                min(good, key=lambda f: (f.latency, -f.top1)) if good else None,
            )
        )
    return out


def _figure(final: FinalLatencies, key: str) -> tuple[float, bool, float | None] | None:
    """(median, quiet and steady, repeatability) of a final-pass figure."""
    figure = final.figures.get(key)
    if not isinstance(figure, dict) or figure.get("median") is None:
        return None
    trusted = bool(figure.get("quiet", True)) and bool(figure.get("steady", True))
    return float(figure["median"]), trusted, FinalLatencies.steadiness(figure)


def trained_models(
    study_attrs: dict[str, Any], trials: dict[int, Any], unit: str
) -> tuple[list[Trained], list[Trained], list[RunRecord], bool]:
    """(found models, baselines, stopped runs, measured alike) of a study: ``trials`` maps trial
    numbers to FrozenTrials (their search latency is the fallback). ``measured alike`` is True
    when every figure comes from the final pass."""
    final = FinalLatencies.of(study_attrs)
    records = RunRecord.all_in(study_attrs).values()
    found: dict[int, Trained] = {}
    baselines: list[Trained] = []
    stopped: list[RunRecord] = []
    alike = bool(final.figures)
    for r in records:
        if r.stopped:
            stopped.append(r)
            continue
        if r.score is None:
            continue
        if r.trial is not None and r.trial in trials:
            figure = _figure(final, FinalLatencies.trial_key(r.trial))
            if figure is None:
                alike = False
                figure = (trials[r.trial].user_attrs[TrialAttr.LATENCY]["median"], True, None)
            model = Trained(f"trial {r.trial}", r.score, figure[0], r.trial, figure[1], figure[2])
            if r.trial not in found or model.top1 > found[r.trial].top1:
                found[r.trial] = model
        elif r.trial is None:  # a model of its own (a baseline): the final figure, or its own
            figure = _figure(final, FinalLatencies.baseline_key(r.name))
            if figure is None and r.baseline_latency() is not None and r.baseline_latency()[1] == unit:
                alike = False
                median, _ = r.baseline_latency()
                figure = (median, bool((r.measured or {}).get("latency", {}).get("quiet", True)), None)
            if figure is not None:
                baselines.append(Trained(r.name, r.score, figure[0], None, figure[1], figure[2]))
    return list(found.values()), baselines, stopped, alike

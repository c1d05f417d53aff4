"""What does a search's accuracy/latency Pareto front pick? A markdown summary per latency band.

    python benchmarks/pareto_summary.py --storage sqlite:///nas.db \
        --study vit-random --study vit-tpe --plot benchmarks/results/vit200_front.png

For each study: the front of (validation top-1 max, measured latency min) over COMPLETE trials,
its 2-D hypervolume against a reference point shared by all the studies given (lowest top-1 and
highest latency of any of their trials), and the front split into three latency bands (low, middle,
high; equal numbers of members) with what the members in each band chose: depth, width, patch
size, token mixers, MLP sparsity patterns and activation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402


def front(trials: list) -> list:
    """Non-dominated trials by (top-1 max, latency min), sorted by latency."""
    ordered = sorted(trials, key=lambda t: (t.user_attrs["latency"]["median"], -t.user_attrs["top1"]))
    kept, best = [], float("-inf")
    for t in ordered:
        if t.user_attrs["top1"] > best:
            kept.append(t)
            best = t.user_attrs["top1"]
    return kept


def hypervolume(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by (latency, top-1) points (lower latency, higher top-1) up to the reference
    (worst latency, worst top-1): the sum of the front's rectangles."""
    area, ref_latency, ref_top1 = 0.0, *reference
    points = sorted(points)  # by latency
    for i, (lat, top1) in enumerate(points):
        next_lat = points[i + 1][0] if i + 1 < len(points) else ref_latency
        area += (next_lat - lat) * (top1 - ref_top1)
    return area


def count(values) -> str:
    return ", ".join(f"{k} {v}" for k, v in Counter(values).most_common())


def band_row(name: str, members: list) -> str:
    archs = [t.user_attrs["arch"] for t in members]
    layers = [layer for a in archs for layer in a["layers"]]
    lat = [t.user_attrs["latency"]["median"] for t in members]
    top1 = [t.user_attrs["top1"] for t in members]
    depth = [len(a["layers"]) for a in archs]
    patterns = [
        layer["mlp_pattern"] + ("" if ":" in layer["mlp_pattern"] else f" {layer['mlp_sparsity']:g}")
        for layer in layers
    ]
    patterns = [p.replace("dense 0", "dense") for p in patterns]
    return (
        f"| {name} | {len(members)} | {min(lat):.3f}–{max(lat):.3f} | {min(top1):.1f}–{max(top1):.1f} | "
        f"{min(depth)}–{max(depth)} (median {statistics.median(depth):g}) | "
        f"{count(a['embed_dim'] for a in archs)} | "
        f"{count(a['patch_size'] for a in archs)} | {count(layer['attention'] for layer in layers)} | "
        f"{count(patterns)} | {count(a['activation'] for a in archs)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", action="append", required=True)
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()
    studies = {
        name: optuna.load_study(study_name=name, storage=args.storage).get_trials(
            states=(TrialState.COMPLETE,)
        )
        for name in args.study
    }
    everything = [t for trials in studies.values() for t in trials]
    reference = (
        max(t.user_attrs["latency"]["median"] for t in everything),
        min(t.user_attrs["top1"] for t in everything),
    )
    print(f"Reference point: latency {reference[0]:.3f} ms, top-1 {reference[1]:.2f} %\n")
    print(
        "| study | trials | unique architectures | front size | hypervolume (ms x %) | best top-1 "
        "| fastest ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    fronts = {}
    for name, trials in studies.items():
        fronts[name] = f = front(trials)
        hv = hypervolume([(t.user_attrs["latency"]["median"], t.user_attrs["top1"]) for t in f], reference)
        unique = len({t.user_attrs["arch_key"] for t in trials})
        print(
            f"| {name} | {len(trials)} | {unique} | {len(f)} | {hv:.3f} | "
            f"{max(t.user_attrs['top1'] for t in trials):.2f} | "
            f"{min(t.user_attrs['latency']['median'] for t in trials):.3f} |"
        )
    for name, f in fronts.items():
        print(f"\nFront of {name}, by latency band (layer counts are over all the band's layers):\n")
        print(
            "| band | members | latency ms | top-1 % | depth | embed_dim | patch | token mixers | "
            "MLP sparsity | activation |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        third = len(f) / 3
        bands = [f[: round(third)], f[round(third) : round(2 * third)], f[round(2 * third) :]]
        for band, members in zip(("low", "middle", "high"), bands):
            if members:
                print(band_row(band, members))
        print("\nMembers (fastest first):\n")
        for t in f:
            print(
                f"- #{t.number}: {t.user_attrs['latency']['median']:.3f} ms, {t.user_attrs['top1']:.2f} %, "
                f"{t.user_attrs['nonzero_params']:,} non-zero params: `{t.user_attrs['summary']}`"
            )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (name, trials), color in zip(studies.items(), ("tab:gray", "tab:blue", "tab:orange")):
            ax.scatter(
                [t.user_attrs["latency"]["median"] for t in trials],
                [t.user_attrs["top1"] for t in trials],
                s=8,
                alpha=0.35,
                color=color,
            )
            f = fronts[name]
            ax.step(
                [t.user_attrs["latency"]["median"] for t in f],
                [t.user_attrs["top1"] for t in f],
                where="post",
                color=color,
                label=f"{name} front ({len(f)})",
            )
        ax.set_xlabel("measured latency, ONNX Runtime CPU 1 thread (ms)")
        ax.set_ylabel("validation top-1 with supernet weights (%)")
        ax.set_xscale("log")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"\nPlot: {args.plot}")


if __name__ == "__main__":
    main()

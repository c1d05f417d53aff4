"""What does a search's accuracy/latency Pareto front pick, and which sampler finds the better one?

    python -m benchmarks.search_pareto --storage sqlite:///nas.db \
        --study vit-fashion_mnist_6k --study vit-tpe --plot front.png --out summary.md

For each study: the front of (validation top-1 max, measured latency min) over COMPLETE trials,
its 2-D hypervolume against a reference point shared by all the studies given (lowest top-1 and
highest latency of any of their trials), and the front split into three latency bands (low, middle,
high; equal numbers of members) with what the members in each band chose: depth, width, patch
size, token mixers, MLP sparsity patterns and activation (for hybrid studies: stage widths,
conv and attention blocks, token mixers, conv and MLP sparsity, activation). The studies are
read as ``nas export`` reads them.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

from benchmarks._harness import argument_parser, finished_trials
from nas.study import latency, top1


def front(trials: list) -> list:
    """Non-dominated trials by (top-1 max, latency min), sorted by latency."""
    kept, best = [], float("-inf")
    for t in sorted(trials, key=lambda t: (latency(t), -top1(t))):
        if top1(t) > best:
            kept.append(t)
            best = top1(t)
    return kept


def hypervolume(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by (latency, top-1) points (lower latency, higher top-1) up to the reference
    (worst latency, worst top-1): the sum of the front's rectangles."""
    area, ref_latency, ref_top1 = 0.0, *reference
    points = sorted(points)  # by latency
    for i, (lat, acc) in enumerate(points):
        next_lat = points[i + 1][0] if i + 1 < len(points) else ref_latency
        area += (next_lat - lat) * (acc - ref_top1)
    return area


def count(values) -> str:
    return ", ".join(f"{k} {v}" for k, v in Counter(values).most_common())


def sparsity(blocks: list[dict], key: str) -> str:
    """Counts of ``pattern level`` over blocks (``dense``, ``structured 0.75``, ``2:4``)."""
    labels = [
        b[f"{key}_pattern"] + ("" if ":" in b[f"{key}_pattern"] else f" {b[f'{key}_sparsity']:g}")
        for b in blocks
    ]
    return count(label.replace("dense 0", "dense") for label in labels)


def vit_columns(archs: list[dict]) -> str:
    layers = [layer for a in archs for layer in a["layers"]]
    depth = [len(a["layers"]) for a in archs]
    return (
        f"{min(depth)}–{max(depth)} (median {statistics.median(depth):g}) | "
        f"{count(a['embed_dim'] for a in archs)} | {count(a['patch_size'] for a in archs)} | "
        f"{count(layer['attention'] for layer in layers)} | {sparsity(layers, 'mlp')} | "
        f"{count(a['activation'] for a in archs)} |"
    )


def hybrid_columns(archs: list[dict]) -> str:
    convs = [b for a in archs for stage in a["stages"] for b in stage["conv_blocks"]]
    attns = [b for a in archs for stage in a["stages"] for b in stage["attention_blocks"]]
    n_conv = [sum(len(stage["conv_blocks"]) for stage in a["stages"]) for a in archs]
    n_attn = [sum(len(stage["attention_blocks"]) for stage in a["stages"]) for a in archs]
    widths = count("/".join(str(stage["width"]) for stage in a["stages"]) for a in archs)
    return (
        f"{widths} | {min(n_conv)}–{max(n_conv)} | {min(n_attn)}–{max(n_attn)} | "
        f"{count(b['attention'] for b in attns)} | {sparsity(convs, 'conv')} | {sparsity(attns, 'mlp')} | "
        f"{count(a['activation'] for a in archs)} |"
    )


# Per architecture family: the band table's columns after latency and top-1, and how to fill them.
BAND_TABLES = {
    "vit": (["depth", "embed_dim", "patch", "token mixers", "MLP sparsity", "activation"], vit_columns),
    "hybrid": (
        ["stage widths", "conv blocks", "attention blocks", "token mixers", "conv sparsity", "MLP sparsity"]
        + ["activation"],
        hybrid_columns,
    ),
}


def unit_of(trials: list) -> str:
    return trials[0].user_attrs["latency"].get("unit", "ms")


def band_table(f: list) -> list[str]:
    """The front split into three latency bands (equal numbers of members), as Markdown lines."""
    family = f[0].user_attrs["arch"]["family"]
    if family not in BAND_TABLES:
        return [f"(no band table for architecture family {family!r})"]
    columns, fill = BAND_TABLES[family]
    lines = [
        f"| band | members | latency {unit_of(f)} | top-1 % | " + " | ".join(columns) + " |",
        "| --- | --- | --- | --- |" + " --- |" * len(columns),
    ]
    third = len(f) / 3
    bands = [f[: round(third)], f[round(third) : round(2 * third)], f[round(2 * third) :]]
    for name, members in zip(("low", "middle", "high"), bands):
        if members:
            lat, acc = [latency(t) for t in members], [top1(t) for t in members]
            archs = [t.user_attrs["arch"] for t in members]
            spans = f"{min(lat):.3f}–{max(lat):.3f} | {min(acc):.1f}–{max(acc):.1f}"
            lines.append(f"| {name} | {len(members)} | {spans} | " + fill(archs))
    return lines


def summary(studies: dict[str, list]) -> str:
    """The Markdown summary: the studies' fronts and hypervolumes, then each front by band."""
    everything = [t for trials in studies.values() for t in trials]
    reference = (max(latency(t) for t in everything), min(top1(t) for t in everything))
    unit = unit_of(everything)
    lines = [f"Reference point: latency {reference[0]:.3f} {unit}, top-1 {reference[1]:.2f} %", ""]
    lines += [
        f"| study | trials | unique architectures | front size | hypervolume ({unit} x %) | best top-1 "
        f"| fastest {unit} |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    fronts = {name: front(trials) for name, trials in studies.items()}
    for name, trials in studies.items():
        f = fronts[name]
        hv = hypervolume([(latency(t), top1(t)) for t in f], reference)
        unique = len({t.user_attrs["arch_key"] for t in trials})
        lines.append(
            f"| {name} | {len(trials)} | {unique} | {len(f)} | {hv:.3f} | "
            f"{max(top1(t) for t in trials):.2f} | {min(latency(t) for t in trials):.3f} |"
        )
    for name, f in fronts.items():
        lines += ["", f"Front of {name}, by latency band (layer counts are over all the band's layers):", ""]
        lines += band_table(f)
        lines += ["", "Members (fastest first):", ""]
        lines += [
            f"- #{t.number}: {latency(t):.3f} {unit}, {top1(t):.2f} %, "
            f"{t.user_attrs['nonzero_params']:,} non-zero params: `{t.user_attrs['summary']}`"
            for t in f
        ]
    return "\n".join(lines) + "\n"


def plot(studies: dict[str, list], path: str) -> None:
    """Every trial of each study as a dot, its front as a step line; latency on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from infra.files import save_figure

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (name, trials), color in zip(studies.items(), ("tab:gray", "tab:blue", "tab:orange", "tab:green")):
        ax.scatter([latency(t) for t in trials], [top1(t) for t in trials], s=8, alpha=0.35, color=color)
        f = front(trials)
        ax.step(
            [latency(t) for t in f],
            [top1(t) for t in f],
            where="post",
            color=color,
            label=f"{name} front ({len(f)})",
        )
    profiler = next(iter(studies.values()))[0].user_attrs["profiler"]
    unit = unit_of(next(iter(studies.values())))
    ax.set_xlabel(f"latency, profiler {profiler['name']} ({unit})")
    ax.set_ylabel("validation top-1 with supernet weights (%)")
    ax.set_xscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    print(f"Plot: {path}")


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", action="append", required=True, help="a study name (repeat to compare)")
    parser.add_argument("--plot", default=None, help="write the fronts' plot here (PNG)")
    parser.add_argument("--out", default=None, help="also write the Markdown summary here")
    args = parser.parse_args()
    studies = {name: finished_trials(args.storage, name) for name in args.study}
    text = summary(studies)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        print(f"written to {args.out}")
    if args.plot:
        plot(studies, args.plot)


if __name__ == "__main__":
    main()

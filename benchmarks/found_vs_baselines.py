"""Do the found models beat the timm models a user would otherwise pick, at equal latency?

    python -m benchmarks.found_vs_baselines --dir RUN --measure "profiler=torch profiler.device=cuda" \\
        --out found_vs_baselines_cuda.json --plot found_vs_baselines_cuda.png -- \\
        dataset=fashion_mnist dataset.root=DATA

Reads the study in ``--dir`` after ``nas train`` has trained its Pareto front and the baselines
with one recipe (``benchmarks.search_pipeline`` does both). Measures every retrained front member
and every trained baseline again, one at a time in this process, with the profiler that
``--measure`` selects (so ONNX Runtime on the CPU and torch on CUDA can each be asked), and for
each baseline finds the best found model at equal or lower latency and the fastest found model of
at least equal top-1. The issue's goal, per baseline: a found model >= 2x faster at equal or
better top-1, or >= 1 point better at equal or lower latency. Top-1 is the stand-alone test top-1.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from benchmarks._harness import argument_parser, build_profiler, compose, write_result


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("overrides", nargs="*", help="the dataset settings of the search (after --)")
    parser.add_argument("--dir", help="folder of the study (nas.db)")
    parser.add_argument("--study", default=None)
    parser.add_argument("--measure", help="profiler overrides, one string (required unless --replot)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--plot", default=None)
    parser.add_argument("--replot", default=None, help="draw --plot from this result JSON; no measuring")
    args = parser.parse_args()
    if args.replot:
        import json

        plot(json.loads(Path(args.replot).read_text()), args.plot or Path(args.replot).with_suffix(".png"))
        return

    if not args.dir or not args.measure:
        parser.error("--dir and --measure are required (unless --replot)")
    import torch

    from nas.config import instantiate
    from nas.report import _retrained, _score
    from nas.study import load_existing_study, reading_storage, trial_arch
    from nas.training.baselines import Normalized, timm_model

    storage = f"sqlite:///{Path(args.dir).resolve() / 'nas.db'}"
    with reading_storage(storage) as opened:
        study = load_existing_study(opened, args.study)
        front = {t.number: t for t in study.best_trials}
        attrs = dict(study.user_attrs)
    retrained = {n: r for n, r in _retrained(attrs).items() if n in front}
    baselines = {}
    for key, record in attrs.items():
        if key.startswith("baseline:"):
            name = record["name"]
            if name not in baselines or _score(record) > _score(baselines[name]):
                baselines[name] = record
    if not retrained or not baselines:
        raise SystemExit(
            f"--dir: study {study.study_name!r} has {len(retrained)} retrained front members "
            f"and {len(baselines)} trained baselines; run nas train first"
        )

    cfg = compose([*args.overrides, *shlex.split(args.measure)])
    data = instantiate("dataset", cfg.dataset).load()
    profiler = build_profiler([*args.overrides, *shlex.split(args.measure)])
    found = []
    for number, record in sorted(retrained.items()):
        result = profiler.measure(trial_arch(front[number]))
        found.append(
            {"trial": number, "top1": _score(record), "params": record["params"], "latency": result.median}
        )
        print(f"trial {number}: {found[-1]['top1']:.2f} % at {result.median:.4g} {profiler.unit}")
    rows = []
    shape = (data.in_channels, data.image_size, data.image_size)
    for name, record in sorted(baselines.items()):
        kwargs = dict(cfg.baselines.models.get(name, {}) or {})
        model = Normalized(
            timm_model(name, data, **kwargs), torch.zeros(data.in_channels), torch.ones(data.in_channels)
        )
        b_latency = profiler.measure_module(model.eval(), shape).median
        b_top1 = _score(record)
        cheaper = [f for f in found if f["latency"] <= b_latency]
        best_cheaper = max(cheaper, key=lambda f: f["top1"], default=None)
        as_good = [f for f in found if f["top1"] >= b_top1]
        fastest_as_good = min(as_good, key=lambda f: f["latency"], default=None)
        met = any(
            (f["latency"] * 2 <= b_latency and f["top1"] >= b_top1)
            or (f["latency"] <= b_latency and f["top1"] >= b_top1 + 1)
            for f in found
        )
        rows.append(
            {
                "baseline": name,
                "params": record["params"],
                "top1": b_top1,
                "latency": b_latency,
                "best_found_at_or_below_latency": best_cheaper,
                "top1_gain_at_or_below_latency": round(best_cheaper["top1"] - b_top1, 2)
                if best_cheaper
                else None,
                "fastest_found_at_equal_top1": fastest_as_good,
                "speed_up_at_equal_top1": round(b_latency / fastest_as_good["latency"], 2)
                if fastest_as_good
                else None,
                "goal_met": met,
            }
        )
        r = rows[-1]
        print(
            f"{name}: {b_top1:.2f} % at {b_latency:.4g} {profiler.unit}; best found at or below: "
            f"{r['top1_gain_at_or_below_latency']} points; speed-up at equal top-1: "
            f"{r['speed_up_at_equal_top1']}; "
            f"goal {'met' if met else 'not met'}"
        )
    result = {
        "study": study.study_name,
        "profiler": {"name": profiler.name, "unit": profiler.unit, "settings": profiler.settings()},
        "found": found,
        "baselines": rows,
        "goal_met_for_every_baseline": all(r["goal_met"] for r in rows),
    }
    if args.plot:
        plot(result, args.plot)
    write_result(args.out, result)


def plot(result: dict, path: str | Path) -> None:
    """Found models (the retrained front, its own Pareto staircase) and the baselines, latency on a
    log axis with plain tick labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, ScalarFormatter

    from infra.files import save_figure

    found = sorted(result["found"], key=lambda f: (f["latency"], -f["top1"]))
    staircase, best = [], -1.0
    for f in found:  # non-dominated: each faster member beats every slower one's top-1 so far
        if f["top1"] > best:
            staircase.append(f)
            best = f["top1"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    ax.scatter(
        [f["latency"] for f in found],
        [f["top1"] for f in found],
        c="tab:blue",
        s=16,
        label="found (retrained front members)",
    )
    ax.step(
        [f["latency"] for f in staircase],
        [f["top1"] for f in staircase],
        where="post",
        c="tab:blue",
        lw=1,
        alpha=0.6,
    )
    for r in result["baselines"]:
        ax.scatter([r["latency"]], [r["top1"]], c="tab:red", marker="s", s=26)
        verdict = "goal met" if r["goal_met"] else "goal not met"
        ax.annotate(
            f"{r['baseline']} ({verdict})",
            (r["latency"], r["top1"]),
            fontsize=7,
            xytext=(-4, 5),
            textcoords="offset points",
            ha="right",
        )
    ax.scatter([], [], c="tab:red", marker="s", s=26, label="timm baselines, same recipe")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    profiler = result["profiler"]
    where = profiler["settings"].get("device") or ", ".join(profiler["settings"].get("providers", []))
    ax.set_xlabel(f"latency, batch 1 ({profiler['unit']}; {profiler['name']} {where})")
    ax.set_ylabel("stand-alone test top-1 (%)")
    ax.set_title(f"{result['study']}: found models against timm baselines")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8, frameon=False)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()

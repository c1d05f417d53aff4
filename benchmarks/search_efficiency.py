"""How many trials does a sampler need to reach what random search reaches in N trials?

    python -m benchmarks.search_efficiency --dir RUN --samplers random tpe --seeds 0 1 2 3 4 --trials 500 \\
        --out search_efficiency.json --plot search_efficiency.png -- \\
        +space=vit dataset=fashion_mnist dataset.root=DATA device=cuda supernet=gpu profiler=predictor

Runs ``nas search <overrides> sampler=S sampler_seed=K n_trials=N study_name=eff-S-K`` for every
sampler and seed in one folder, so every run shares one trained supernet (``sampler_seed`` seeds
the sampler alone; the split and the supernet follow ``seed``). Then the hypervolume of (validation
top-1, latency) against completed trials for each run, with one reference point for all (the
lowest top-1 and the highest latency of any run), and for each other sampler and seed the number
of trials it needed to reach random search's final hypervolume with the same seed: median and
range over seeds, plus the curves.

``--parallel K`` runs K searches at once (after the first, which trains the supernet; all of them
at once when ``--dir`` already holds a trained supernet in ``.nas_cache/supernets``). With
``profiler=predictor`` standing in for measurement, ``--measure "profiler=onnxruntime"`` measures
every run's final front with that profiler afterwards, one at a time: the predicted and measured
latency of each member and each front's hypervolume with measured latencies.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from benchmarks._harness import (
    argument_parser,
    build_profiler,
    finished_trials,
    run_nas,
    run_nas_many,
    write_result,
)


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("overrides", nargs="*", help="nas search overrides (after --)")
    parser.add_argument("--dir", required=True, help="working folder (nas.db, .nas_cache)")
    parser.add_argument("--samplers", nargs="+", default=["random", "tpe"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--out", default=None)
    parser.add_argument("--plot", default=None)
    parser.add_argument("--parallel", type=int, default=1, help="searches at once (after the first)")
    parser.add_argument(
        "--measure", default=None, help="profiler overrides that measure the final fronts, one string"
    )
    args = parser.parse_args()
    if "random" not in args.samplers:
        raise SystemExit("--samplers: random is the baseline every sampler is compared with")

    import numpy as np

    from nas.report import hypervolume_curve, trials_to_reach
    from nas.study import latency, top1

    work = Path(args.dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{work / 'nas.db'}"
    walls, runs = {}, {}
    commands = {}
    for seed in args.seeds:
        for sampler in args.samplers:
            name = f"eff-{sampler}-{seed}"
            command = ["search", *args.overrides, f"sampler={sampler}", f"sampler_seed={seed}"]
            commands[name] = command + [f"n_trials={args.trials}", f"study_name={name}", "progress=false"]
    supernets = work / ".nas_cache" / "supernets"
    if not (supernets.is_dir() and any(supernets.iterdir())):
        first = next(iter(commands))  # alone: it trains the supernet the others reuse
        walls[first] = round(run_nas(commands.pop(first), work, work / f"{first}.log"), 1)
    else:  # a supernet trained earlier (copied in, or by an earlier run): every run at once
        print(f"supernet found in {supernets}: {len(commands)} searches, {args.parallel} at once")
    walls |= run_nas_many(commands, work, work, args.parallel)
    for seed in args.seeds:
        for sampler in args.samplers:
            runs[(sampler, seed)] = finished_trials(storage, f"eff-{sampler}-{seed}")
    everything = [t for trials in runs.values() for t in trials]
    reference = np.array(
        [-min(top1(t) for t in everything) + 1e-9, max(latency(t) for t in everything) * 1.0001]
    )
    curves = {key: hypervolume_curve(trials, reference) for key, trials in runs.items()}
    random_final = {seed: curves[("random", seed)][1][-1] for seed in args.seeds}
    summary = {}
    for sampler in args.samplers:
        finals = [curves[(sampler, seed)][1][-1] for seed in args.seeds]
        entry = {"final_hypervolume_median": statistics.median(finals), "final_hypervolume": finals}
        if sampler != "random":
            needed = [trials_to_reach(*curves[(sampler, seed)], random_final[seed]) for seed in args.seeds]
            # A run that never reached it counts as more than --trials (the median stays defined
            # while fewer than half the runs miss).
            as_numbers = [math.inf if n is None else n for n in needed]
            median = statistics.median(as_numbers)
            entry |= {
                "trials_to_reach_random_final": needed,
                "median": median if median != math.inf else f">{args.trials}",
                "range": [
                    min(as_numbers) if min(as_numbers) != math.inf else f">{args.trials}",
                    max(as_numbers) if max(as_numbers) != math.inf else f">{args.trials}",
                ],
                "not_reached": needed.count(None),
                "speed_up_median": round(args.trials / median, 2) if median != math.inf else None,
            }
        summary[sampler] = entry
        print(f"{sampler}: {entry}")
    measured_fronts = {}
    if args.measure:
        import shlex

        import optuna
        from optuna._hypervolume import compute_hypervolume

        from nas.study import reading_storage, trial_arch

        others = [o for o in args.overrides if not o.lstrip("+~").startswith("profiler")]
        profiler = build_profiler([*others, *shlex.split(args.measure)])
        for sampler, seed in runs:
            with reading_storage(storage) as opened:
                front = optuna.load_study(study_name=f"eff-{sampler}-{seed}", storage=opened).best_trials
            members = {}
            for t in sorted(front, key=latency):
                key = t.user_attrs["arch_key"]
                if key not in members:
                    measured = profiler.measure(trial_arch(t)).median
                    members[key] = {
                        "trial": t.number,
                        "top1": top1(t),
                        "predicted": latency(t),
                        "measured": measured,
                    }
            members = list(members.values())
            points = np.array([[-m["top1"], m["measured"]] for m in members])
            points = points[(points < reference).all(axis=1)]
            hv = float(compute_hypervolume(points, reference)) if len(points) else 0.0
            errors = [m["predicted"] / m["measured"] - 1 for m in members]
            measured_fronts[f"{sampler}-{seed}"] = {
                "members": members,
                "hypervolume_predicted": curves[(sampler, seed)][1][-1],
                "hypervolume_measured": hv,
                "within_10_percent": sum(abs(e) <= 0.10 for e in errors) / len(errors),
                "median_abs_error": statistics.median(abs(e) for e in errors),
            }
            print(
                f"{sampler}-{seed}: front of {len(members)} measured, hypervolume {hv:.4g} "
                f"(predicted {curves[(sampler, seed)][1][-1]:.4g})"
            )
        for sampler in args.samplers:
            summary[sampler]["final_hypervolume_measured"] = [
                measured_fronts[f"{sampler}-{seed}"]["hypervolume_measured"] for seed in args.seeds
            ]
    result = {
        "trials_per_run": args.trials,
        "seeds": args.seeds,
        "overrides": args.overrides,
        "reference_point": {"top1": -float(reference[0]), "latency": float(reference[1])},
        "summary": summary,
        "wall_s": walls,
        "measured_fronts": measured_fronts,
        "curves": {
            f"{sampler}-{seed}": {"trials": list(map(int, counts)), "hypervolume": list(map(float, values))}
            for (sampler, seed), (counts, values) in curves.items()
        },
    }
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from infra.files import save_figure

        fig, ax = plt.subplots(figsize=(7, 4.5))
        colours = dict(zip(args.samplers, ["0.6", "tab:blue", "tab:orange", "tab:green", "tab:red"]))
        for (sampler, seed), (counts, values) in curves.items():
            label = sampler if seed == args.seeds[0] else None
            ax.plot(counts, values, c=colours.get(sampler, "k"), lw=1, label=label)
        # From the 10th trial on: the first few trials' rise would flatten the differences.
        after = [v for counts, values in curves.values() for c, v in zip(counts, values) if c >= 10]
        if after:
            low, high = min(after), max(after)
            ax.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
        ax.set_xlabel("completed trials")
        ax.set_ylabel("hypervolume (latency x top-1)")
        ax.set_title(f"{len(args.seeds)} seeds per sampler, {args.trials} trials each")
        ax.legend()
        fig.tight_layout()
        save_figure(fig, args.plot)
    write_result(args.out, result)


if __name__ == "__main__":
    main()

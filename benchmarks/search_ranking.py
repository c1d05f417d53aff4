"""Does the supernet rank candidates as they rank when trained on their own?

    python -m benchmarks.search_ranking --dir RUN --n 24 -- dataset=fashion_mnist dataset.root=DATA \\
        device=cuda retrain.epochs=30 trainer=tune trainer.gpus_per_trial=0.25 trainer.max_concurrent=8 \\
        --out search_ranking.json --plot search_ranking.png

(or ``--parallel 8 -- ... trainer=local`` where Ray is not installed: eight ``nas train`` processes
at once, one architecture each.)

Picks ``--n`` distinct architectures of the study in ``--dir`` (``nas.db``; ``--study`` when it
holds several): every front member (up to a third of ``--n``), the rest at evenly spaced ranks of
inherited validation top-1 over the whole accuracy/latency range, so the check is not only about
the front. Trains them with ``nas train trials=[...]`` (the overrides after ``--`` choose the
dataset, recipe and trainer; give the search's dataset settings) and reports Kendall's tau and
Spearman's rho (scipy) between inherited validation top-1 and stand-alone top-1 (test split where
the dataset has one, else validation), with a scatter plot. ASHA would stop weak candidates
early, so use ``trainer.scheduler=fifo`` with Tune here: every candidate must train to the end.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks._harness import argument_parser, finished_trials, run_nas, run_nas_many, write_result


def pick(trials: list, front_numbers: set[int], n: int) -> list:
    """``n`` trials of distinct architectures: front members (at most n // 3), then evenly spaced
    ranks of inherited top-1 among the rest."""
    from nas.study import top1

    unique = {}
    for t in sorted(trials, key=lambda t: t.number):
        unique.setdefault(t.user_attrs["arch_key"], t)
    distinct = list(unique.values())
    front = [t for t in distinct if t.number in front_numbers][: max(1, n // 3)]
    in_front = {t.number for t in front}
    rest = sorted((t for t in distinct if t.number not in in_front), key=top1)
    k = min(n - len(front), len(rest))
    ranks = sorted({round(i * (len(rest) - 1) / max(1, k - 1)) for i in range(k)}) if k else []
    return front + [rest[i] for i in ranks]


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("overrides", nargs="*", help="nas train overrides (after --)")
    parser.add_argument("--dir", required=True, help="folder of the study (nas.db, .nas_cache)")
    parser.add_argument("--study", default=None)
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--out", default=None)
    parser.add_argument("--plot", default=None)
    parser.add_argument(
        "--parallel",
        type=int,
        default=1,
        help="nas train processes at once, one architecture each (1: one process)",
    )
    parser.add_argument(
        "--analyse",
        action="store_true",
        help="train nothing: rank every trial of the study that has a stand-alone result",
    )
    args = parser.parse_args()

    import optuna
    from scipy.stats import kendalltau, spearmanr

    from nas.study import latency, reading_storage, top1

    work = Path(args.dir).resolve()
    storage = f"sqlite:///{work / 'nas.db'}"
    with reading_storage(storage) as opened:
        names = [s.study_name for s in optuna.get_all_study_summaries(opened)]
        name = args.study or (names[0] if len(names) == 1 else None)
        if name is None:
            raise SystemExit(f"--study: the storage holds {', '.join(names)}")
        front_numbers = {t.number for t in optuna.load_study(study_name=name, storage=opened).best_trials}
    chosen = pick(finished_trials(storage, name), front_numbers, args.n)
    numbers = ",".join(str(t.number) for t in chosen)
    if args.analyse:
        wall = 0.0
    elif args.parallel > 1:  # one process per architecture, several at once on the one device
        start = time.perf_counter()
        jobs = {
            f"rank-{t.number}": ["train", f"study_name={name}", f"trial={t.number}", *args.overrides]
            for t in chosen
        }
        run_nas_many(jobs, work, work / "train-logs", args.parallel)
        wall = time.perf_counter() - start
    else:
        wall = run_nas(
            ["train", f"study_name={name}", f"trials=[{numbers}]", *args.overrides], work, work / "train.log"
        )

    with reading_storage(storage) as opened:
        attrs = optuna.load_study(study_name=name, storage=opened).user_attrs
    records = {}
    for key, record in attrs.items():
        if key.startswith("retrained:") and record.get("kind") == "trial":
            records.setdefault(int(record["name"]), record)  # first recipe found; one recipe per run dir
    if args.analyse:  # every trial with a result, whichever run trained it
        by_number = {t.number: t for t in finished_trials(storage, name)}
        chosen = [by_number[n] for n in sorted(records) if n in by_number]
    rows = []
    for t in chosen:
        r = records[t.number]
        alone = r["test_top1"] if r.get("test_top1") is not None else r["val_top1"]
        rows.append(
            {
                "trial": t.number,
                "front": t.number in front_numbers,
                "inherited_val_top1": round(top1(t), 3),
                "alone_top1": round(alone, 3),
                "alone_val_top1": round(r["val_top1"], 3),
                "epochs": r["epochs"],
                "latency": latency(t),
                "summary": t.user_attrs.get("summary"),
            }
        )
    x = [row["inherited_val_top1"] for row in rows]
    y = [row["alone_top1"] for row in rows]
    tau, rho = kendalltau(x, y), spearmanr(x, y)
    result = {
        "study": name,
        "n": len(rows),
        "front_members": sum(row["front"] for row in rows),
        "kendall_tau": round(float(tau.statistic), 4),
        "kendall_p": float(tau.pvalue),
        "spearman_rho": round(float(rho.statistic), 4),
        "spearman_p": float(rho.pvalue),
        "alone_figure": "test top-1"
        if any(r.get("test_top1") is not None for r in records.values())
        else "val top-1",
        "train_wall_s": round(wall, 1),
        "overrides": args.overrides,
        "rows": rows,
    }
    tau_rho = f"Kendall tau {result['kendall_tau']}, Spearman rho {result['spearman_rho']}"
    print(f"{name}: {len(rows)} architectures, {tau_rho}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from infra.files import save_figure

        fig, ax = plt.subplots(figsize=(5.5, 5))
        colours = ["tab:blue" if row["front"] else "0.5" for row in rows]
        ax.scatter(x, y, c=colours, s=18)
        ax.set_xlabel("inherited validation top-1 (%)")
        ax.set_ylabel(f"stand-alone {result['alone_figure']} (%)")
        ax.set_title(
            f"{name}: tau {result['kendall_tau']:.2f}, rho {result['spearman_rho']:.2f} (blue: front)"
        )
        fig.tight_layout()
        save_figure(fig, args.plot)
    write_result(args.out, result)


if __name__ == "__main__":
    main()

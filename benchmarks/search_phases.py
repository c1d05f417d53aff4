"""Where does the wall time of one whole search go (supernet, trials, the rest), and of its export?

    python -m benchmarks.search_phases +space=vit dataset=fashion_mnist dataset.root=DATA \\
        device=cuda supernet=gpu n_trials=200 --budget-ms 1000 --out search_gpu_vit_200.json

Runs ``nas search <overrides>`` and then ``nas export latency_budget_ms=BUDGET`` as a user would
(subprocesses in a fresh folder, ``--dir`` to choose it), each timed, and splits the search's
wall time by reading its study: supernet training (the seconds the supernet recorded), the trial
phase (first trial started to last trial finished), and the rest (start-up, data, scoring the
front on the test split, writing the front).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from benchmarks._harness import argument_parser, finished_trials, run_nas, write_result


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("overrides", nargs="*", help="nas search overrides")
    parser.add_argument("--budget-ms", type=float, default=1000.0, help="nas export latency_budget_ms")
    parser.add_argument("--dir", default=None, help="working folder (default: a new temporary one)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    work = Path(args.dir or tempfile.mkdtemp(prefix="nas-phases-"))
    work.mkdir(parents=True, exist_ok=True)
    search_wall = run_nas(["search", *args.overrides], work, work / "search.log")
    export_wall = run_nas(["export", f"latency_budget_ms={args.budget_ms}"], work, work / "export.log")

    import optuna

    from nas.records import STUDY_ATTR, TEST_ATTR
    from nas.study import reading_storage

    storage = f"sqlite:///{work / 'nas.db'}"
    with reading_storage(storage) as opened:
        (summary,) = optuna.get_all_study_summaries(opened)
        study = optuna.load_study(study_name=summary.study_name, storage=opened)
        meta = study.user_attrs[STUDY_ATTR]["supernet"]
        tested = study.user_attrs.get(TEST_ATTR, {})
    trials = finished_trials(storage, summary.study_name)
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    measured = [t.user_attrs.get("latency_source") for t in trials]
    result = {
        "command": f"nas search {' '.join(args.overrides)}; nas export latency_budget_ms={args.budget_ms:g}",
        "search_wall_s": round(search_wall, 1),
        "export_wall_s": round(export_wall, 1),
        "supernet": {
            k: meta.get(k)
            for k in (
                "train_seconds",
                "steps",
                "batch_size",
                "images_per_s",
                "gpu_busy_share",
                "largest_top1",
                "smallest_top1",
                "device",
            )
        },
        "trials": {
            "complete": len(trials),
            "span_s": round(span, 1),
            "scoring_s_median": statistics.median(t.user_attrs.get("eval_seconds", 0) for t in trials),
            "latency_s_median": statistics.median(t.user_attrs.get("latency_seconds", 0) for t in trials),
            "latency_source": {s: measured.count(s) for s in set(measured)},
        },
        "front_test_top1": tested,
        "other_s": round(search_wall - span - meta["train_seconds"], 1),
    }
    for key, value in result.items():
        print(f"{key}: {value}")
    write_result(args.out, result)


if __name__ == "__main__":
    main()

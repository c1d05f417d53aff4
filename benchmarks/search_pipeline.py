"""The whole path a user takes on one machine, each phase timed: supernet, search, retraining the
Pareto front and the timm baselines, report.

    python -m benchmarks.search_pipeline --dir RUN --parallel 8 --out pipeline.json \\
        --search "+space=vit supernet=gpu n_trials=500 executor.n_workers=8" \\
        --train "retrain.epochs=30" -- dataset=fashion_mnist dataset.root=DATA device=cuda

The overrides after ``--`` go to every command (dataset, device, seed); ``--search`` and
``--train`` add their own. Runs, as subprocesses in ``--dir``: ``nas search`` (its wall time split
into supernet training, the trial phase and the rest, read from the study), then every front
member (``nas train trial=N``) and every baseline of the ``baselines`` group (``nas train
timm=NAME``), ``--parallel`` processes at once on the one device, then ``nas report``. With
``--tune`` (and ``--train "trainer=tune trainer.gpus_per_trial=0.1 ..."``) the front trains as
Tune trials of one ``nas train front=true``, the baselines in processes beside it.

With ``--early-baselines`` the baselines start with the search, as a user would start them: they
do not depend on it. They train in ``--dir``/baselines-early with no study (latency by FLOPs,
cheap, so that they keep off the cores ONNX Runtime times on) into the shared cache; once the front
is retrained, ``nas train timm=NAME study_name=...`` in ``--dir`` finds each training cached,
measures its latency with the study's profiler on a quiet machine and records it with the study.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from benchmarks._harness import argument_parser, finished_trials, run_nas, run_nas_many, write_result


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("overrides", nargs="*", help="overrides for every nas command (after --)")
    parser.add_argument("--dir", required=True, help="working folder (nas.db, .nas_cache)")
    parser.add_argument("--search", default="", help="nas search overrides, one string")
    parser.add_argument("--train", default="", help="nas train overrides, one string")
    parser.add_argument(
        "--tune", action="store_true", help="train the front as one nas train front=true (Tune)"
    )
    parser.add_argument("--parallel", type=int, default=4, help="nas train processes at once")
    parser.add_argument(
        "--baselines", nargs="*", default=None, help="timm models (default: the baselines group)"
    )
    parser.add_argument(
        "--early-baselines", action="store_true", help="train the baselines from the start, beside the search"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import optuna

    from nas.config import compose
    from nas.records import STUDY_ATTR
    from nas.study import reading_storage

    work = Path(args.dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    search_args, train_args = shlex.split(args.search), shlex.split(args.train)
    walls: dict[str, float] = {}
    started = time.perf_counter()
    baselines = args.baselines
    if baselines is None:
        baselines = list(compose([*args.overrides, *train_args]).baselines.models)
    local = [o for o in train_args if not o.lstrip("+~").startswith("trainer")]  # baselines: local trainer
    early = None
    if args.early_baselines:
        from concurrent.futures import ThreadPoolExecutor

        (work / "baselines-early").mkdir(exist_ok=True)
        first = [
            *args.overrides,
            *local,
            "progress=false",
            "profiler=flops",
            f"cache_dir={work / '.nas_cache'}",
        ]
        early_jobs = {f"baseline-{b}": ["train", *first, f"timm={b}"] for b in baselines}
        background = ThreadPoolExecutor(1)
        early = background.submit(
            run_nas_many, early_jobs, work / "baselines-early", work / "train-logs", len(early_jobs)
        )
    walls["search"] = round(run_nas(["search", *args.overrides, *search_args], work, work / "search.log"), 1)

    storage = f"sqlite:///{work / 'nas.db'}"
    with reading_storage(storage) as opened:
        (summary,) = optuna.get_all_study_summaries(opened)
        study = optuna.load_study(study_name=summary.study_name, storage=opened)
        meta = study.user_attrs[STUDY_ATTR]["supernet"]
        front = sorted(t.number for t in study.best_trials)
    name = summary.study_name
    trials = finished_trials(storage, name)
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()

    common = [*args.overrides, *train_args, f"study_name={name}", "progress=false"]
    # Baselines first: they are the longest trainings (a GPU run left three of five unfinished
    # when they started last), and each measures its latency before it trains.
    alone = [*args.overrides, *local, f"study_name={name}", "progress=false"]
    jobs = {f"baseline-{b}": ["train", *alone, f"timm={b}"] for b in baselines}
    if early is not None:  # they are training already: recorded with the study once they end
        jobs = {}
    if args.tune:  # the front as Tune trials in one process, each baseline in a process beside it
        jobs = jobs | {"front": ["train", *common, "front=true"]}
    else:
        jobs = jobs | {f"trial-{n}": ["train", *common, f"trial={n}"] for n in front}
    partial = {"study": name, "walls_s": dict(walls), "trials": len(trials), "front": front}
    partial["search_split_s"] = {
        "supernet_training": meta.get("train_seconds"),
        "trial_phase": round(span, 1),
    }
    write_result(args.out, partial | {"unfinished": "retraining"})  # a later phase may not end in time
    t0 = time.perf_counter()
    job_walls = run_nas_many(jobs, work, work / "train-logs", len(jobs) if args.tune else args.parallel)
    walls["retrain_front_and_baselines" if early is None else "retrain_front"] = round(
        time.perf_counter() - t0, 1
    )
    if early is not None:
        early_walls = early.result()  # each from the pipeline's start
        job_walls |= {f"{k} (from the start)": v for k, v in early_walls.items()}
        walls["baselines_done_after_start"] = round(time.perf_counter() - started, 1)
        t1 = time.perf_counter()
        record = {f"record-{b}": ["train", *alone, f"timm={b}"] for b in baselines}
        job_walls |= run_nas_many(record, work, work / "train-logs", len(record))
        walls["record_baselines"] = round(time.perf_counter() - t1, 1)
    walls["report"] = round(
        run_nas(["report", *args.overrides, f"study_name={name}"], work, work / "report.log"), 1
    )
    walls["total"] = round(time.perf_counter() - started, 1)

    with reading_storage(storage) as opened:
        attrs = optuna.load_study(study_name=name, storage=opened).user_attrs
    retrained = {k: v for k, v in attrs.items() if k.startswith(("retrained:", "baseline:"))}
    result = {
        "study": name,
        "overrides": args.overrides,
        "search": search_args,
        "train": train_args,
        "parallel": args.parallel,
        "early_baselines": args.early_baselines,
        "walls_s": walls,
        "search_split_s": {
            "supernet_training": meta.get("train_seconds"),
            "trial_phase": round(span, 1),
            "rest": round(walls["search"] - (meta.get("train_seconds") or 0) - span, 1),
        },
        "supernet": {
            k: meta.get(k) for k in ("images_per_s", "gpu_busy_share", "largest_top1", "smallest_top1")
        },
        "trials": len(trials),
        "front": front,
        "job_walls_s": job_walls,
        "retrained": retrained,
    }
    print(f"{name}: {walls}")
    write_result(args.out, result)


if __name__ == "__main__":
    main()

"""How many trials per second do 1, 2, ... workers on one machine complete?

    python -m benchmarks.scale_out_throughput --profiler flops --trials 80 \\
        --extra executor.threads_per_worker=1
    python -m benchmarks.scale_out_throughput --profiler flops --trials 80
    python -m benchmarks.scale_out_throughput --profiler onnxruntime --trials 60 \\
        --extra executor.threads_per_worker=1

The supernet is trained once (a 1-trial warm-up search); then one real ``nas search`` per worker
count on a fresh database each (its latency table starts empty, so every ORT figure is a real
measurement). Trials per second over the trial phase: first trial start to last trial end, from
the trials' timestamps (worker start-up excluded).
"""

from __future__ import annotations

from collections import Counter

from benchmarks._harness import argument_parser, write_result
from benchmarks._scale_out import (
    add_common_arguments,
    census,
    complete_trials,
    load_study,
    search,
    sqlite_url,
    workdir_of,
)


def main() -> None:
    parser = argument_parser(__doc__)
    add_common_arguments(parser, workers=None)
    parser.add_argument("--worker-counts", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trials", type=int, default=80)
    parser.add_argument("--profiler", default="flops")
    args = parser.parse_args()

    workdir = workdir_of(args)
    search(workdir, [f"storage={sqlite_url(workdir, 'throughput_warm')}", "n_trials=1"], "throughput_warm")
    runs = {}
    for workers in args.worker_counts:
        storage = sqlite_url(workdir, f"throughput_{workers}w")
        study = f"tp-{args.profiler}-{workers}w"
        overrides = [f"storage={storage}", f"study_name={study}", f"n_trials={args.trials}"]
        overrides += [f"executor.n_workers={workers}", f"profiler={args.profiler}", *args.extra]
        log = f"throughput_{args.profiler}_{workers}w"
        wall = search(workdir, overrides, log)
        run = census(storage, study, workdir / f"{log}.log") | {"wall_s": round(wall, 1)}
        trials = complete_trials(load_study(storage, study))
        run["latency_sources"] = dict(Counter(t.user_attrs["latency_source"] for t in trials))
        runs[workers] = run
    first = args.worker_counts[0]
    print("| workers | trials per s | speed-up | of linear | wall |")
    print("| --- | --- | --- | --- | --- |")
    for workers, run in runs.items():
        run["speedup"] = round(run["trials_per_s"] / runs[first]["trials_per_s"], 3)
        run["of_linear"] = round(run["speedup"] / (workers / first), 3)
        print(
            f"| {workers} | {run['trials_per_s']:.2f} | {run['speedup']:.2f}x | {run['of_linear']:.2f} "
            f"| {run['wall_s']:.0f} s |"
        )
    result = {"profiler": args.profiler, "overrides": args.extra, "runs": runs}
    write_result(args.out or workdir / f"scale_out_throughput_{args.profiler}.json", result)


if __name__ == "__main__":
    main()

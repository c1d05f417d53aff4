"""Do latencies measured during a K-worker ORT search agree with the same architectures measured
alone minutes later? (The chunked design: see scale_out_interference for the interleaved one.)

    python -m benchmarks.scale_out_agreement --workers 2 --trials 60 --chunk 10 --repeats 4
    python -m benchmarks.scale_out_agreement --workers 1 --trials 60 --chunk 10 --repeats 4  # control

The search runs in chunks of ``--chunk`` trials (each a rerun topping up the study); right after
each chunk this process measures each of its architectures alone ``--repeats`` times (passes
over the chunk), with the search's own profiler settings, so that during and alone see the same
speed phase of the machine. Agreement would mean a figure measured during the search is like one
more measurement alone: no lean, and as close to the alone figures as they are to each other
(leave-one-out).
"""

from __future__ import annotations

import statistics
from collections import Counter

from benchmarks._harness import argument_parser, leave_one_out, paired_summary, write_result
from benchmarks._scale_out import (
    add_common_arguments,
    complete_trials,
    load_study,
    search,
    sqlite_url,
    workdir_of,
)


def main() -> None:
    from latency_models import create_profiler
    from nas.study import trial_arch

    parser = argument_parser(__doc__)
    add_common_arguments(parser, workers=2)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--chunk", type=int, default=10, help="trials per search run")
    parser.add_argument("--repeats", type=int, default=4, help="alone measurements per architecture")
    args = parser.parse_args()

    workdir = workdir_of(args)
    storage, study_name = sqlite_url(workdir, "agreement"), f"agree-{args.workers}w"
    rows, seen, profiler, settings = [], set(), None, None
    for n_trials in range(args.chunk, args.trials + 1, args.chunk):
        overrides = [f"storage={storage}", f"study_name={study_name}", f"n_trials={n_trials}"]
        overrides += [f"executor.n_workers={args.workers}", "profiler=onnxruntime", *args.extra]
        search(workdir, overrides, "agreement")
        chunk = [
            t
            for t in complete_trials(load_study(storage, study_name))
            if t.user_attrs.get("latency_source") == "measured" and t.number not in seen
        ]
        if profiler is None:
            settings = chunk[0].user_attrs["profiler"]["settings"]
            profiler = create_profiler("onnxruntime", **settings)
        alone: dict[int, list[float]] = {t.number: [] for t in chunk}
        for _ in range(args.repeats):  # passes over the chunk: each repeat at another moment
            for t in chunk:
                alone[t.number].append(profiler.measure(trial_arch(t)).median)
        for t in chunk:
            seen.add(t.number)
            during, ms = t.user_attrs["latency"], alone[t.number]
            rows.append(
                {
                    "trial": t.number,
                    "worker": t.user_attrs["worker"],
                    "during_ms": during["median"],
                    "during_cv": during.get("cv"),
                    "alone_ms": ms,
                    "during_over_alone": during["median"] / statistics.median(ms) - 1,
                    "alone_over_others": leave_one_out(ms),
                    "during_rank": sum(m < during["median"] for m in ms),  # 0..repeats
                }
            )
        print(f"{len(rows)} architectures measured during the search and {args.repeats}x alone", flush=True)

    ranks = Counter(r["during_rank"] for r in rows)
    result = {
        "workers": args.workers,
        "n_measured": len(rows),
        "repeats_alone": args.repeats,
        "chunk": args.chunk,
        "profiler_settings": settings,
        "during_vs_alone_median": paired_summary([r["during_over_alone"] for r in rows]),
        "alone_vs_other_alone": paired_summary([e for r in rows for e in r["alone_over_others"]]),
        "during_rank_among_alone": {str(k): ranks.get(k, 0) for k in range(args.repeats + 1)},
        "during_within_alone_range": round(
            sum(min(r["alone_ms"]) <= r["during_ms"] <= max(r["alone_ms"]) for r in rows) / len(rows), 3
        ),
        "median_cv_during": round(statistics.median(r["during_cv"] for r in rows if r["during_cv"]), 4),
        "rows": rows,
    }
    for key in ("during_vs_alone_median", "alone_vs_other_alone"):
        s = result[key]
        size = f"median |.| {s['median_abs']:.1%}, p90 {s['p90_abs']:.1%}"
        print(f"{key}: {size}, signed {s['median_signed']:+.1%}")
    print(
        f"during within the alone min-max: {result['during_within_alone_range']:.0%}; "
        f"rank of during among alone: {result['during_rank_among_alone']}"
    )
    write_result(args.out or workdir / f"scale_out_agreement_{args.workers}w.json", result)


if __name__ == "__main__":
    main()

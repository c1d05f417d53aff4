"""Does a K-worker search running beside a measurement change the figure? The same architectures
measured interleaved with the search running, stopped, and running without the lock.

    python -m benchmarks.scale_out_interference --workers 2 --archs 8 --repeats 100 --max-seconds 900 \\
        --conditions search alone
    python -m benchmarks.scale_out_interference --workers 2 --archs 8 --repeats 50 --max-seconds 1800

A background ``nas search`` (``--profiler``, flops by default: its workers compute without
pause) runs while this process measures ``--archs`` of its architectures with the ONNX Runtime
profiler of the config (conf/profiler/onnxruntime.yaml) in the ``--conditions``, back to back per
architecture in rotating order, so that the machine's slow drift falls on all alike:
``search`` (the workers run; the machine-wide lock keeps them out of the measurement),
``alone`` (the whole search stopped with SIGSTOP, sent while this process holds the lock, so no
worker is stopped holding it) and ``no_lock`` (the workers run and the lock is switched off: the
control that shows what the lock prevents). Paired: each figure against the alone figure taken
next to it; spread: each alone figure against the median of the other alone figures of that
architecture. The profiler records other processes' CPU load during the timed calls.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import statistics
import sys
import time

from benchmarks._harness import (
    argument_parser,
    build_profiler,
    leave_one_out,
    paired_summary,
    percent,
    write_result,
)
from benchmarks._scale_out import Background, add_common_arguments, complete_trials, workdir_of

CONDITIONS = ("search", "alone", "no_lock")


def measure_in(condition: str, profiler, arch, background: Background):
    """One measurement of ``arch`` with the background search in ``condition``."""
    if condition == "alone":
        background.signal(signal.SIGSTOP)
    if condition == "no_lock":
        os.environ["NAS_NO_MEASURE_LOCK"] = "1"
    try:
        return profiler.measure(arch)
    finally:
        os.environ.pop("NAS_NO_MEASURE_LOCK", None)
        if condition == "alone":
            background.signal(signal.SIGCONT)


def main() -> None:
    from nas.study import trial_arch

    parser = argument_parser(__doc__)
    add_common_arguments(parser, workers=2)
    parser.add_argument("--profiler", default="flops", help="the background search's profiler")
    parser.add_argument("--archs", type=int, default=8, help="architectures measured")
    parser.add_argument("--repeats", type=int, default=8, help="rounds over the architectures")
    parser.add_argument("--max-seconds", type=float, default=1e9, help="no new round past this")
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    args = parser.parse_args()
    if "alone" not in args.conditions:
        sys.exit("--conditions: alone and any of search, no_lock")

    workdir = workdir_of(args)
    profiler = build_profiler(["profiler=onnxruntime"])
    conditions = tuple(args.conditions)
    orders = [list(o) for o in itertools.permutations(conditions)]
    random.Random(0).shuffle(orders)
    background = Background(workdir, "interference", args.workers, args.profiler, args.extra)
    try:
        background.wait_for(max(args.archs, 2 * args.workers))
        chosen = sorted(
            complete_trials(background.study())[: args.archs], key=lambda t: t.user_attrs["flops"]
        )
        archs = [trial_arch(t) for t in chosen]
        medians = {c: [[] for _ in archs] for c in conditions}
        loads = {c: [] for c in conditions}
        step, first, deadline = 0, background.completed(), time.monotonic() + args.max_seconds
        repeats = args.repeats
        for repeat in range(args.repeats):
            if repeat and time.monotonic() > deadline:
                repeats = repeat
                break
            for i, arch in enumerate(archs):  # the conditions back to back, in rotating order
                for condition in orders[step % len(orders)]:
                    result = measure_in(condition, profiler, arch, background)
                    medians[condition][i].append(result.median)
                    loads[condition].append(result.background_load)
                step += 1
            print(
                f"round {repeat + 1}/{args.repeats}; background trials: {background.completed() - first}",
                flush=True,
            )
        background_trials = background.completed() - first
    finally:
        background.kill()

    def paired(condition: str) -> list[float]:  # each measurement against alone's, taken next to it
        return [
            m / a - 1 for i in range(len(archs)) for m, a in zip(medians[condition][i], medians["alone"][i])
        ]

    def per_arch(condition: str) -> list[float]:  # per architecture: its median in condition / alone
        return [
            statistics.median(medians[condition][i]) / statistics.median(medians["alone"][i]) - 1
            for i in range(len(archs))
        ]

    others = [c for c in conditions if c != "alone"]
    result = {
        "workers": args.workers,
        "background_profiler": args.profiler,
        "archs": len(archs),
        "repeats": repeats,
        "profiler_settings": profiler.settings(),
        **{f"{c}_vs_alone_paired": paired_summary(paired(c)) for c in others},
        **{f"{c}_vs_alone_per_arch": paired_summary(per_arch(c)) for c in others},
        "alone_vs_other_alone": paired_summary([e for ms in medians["alone"] for e in leave_one_out(ms)]),
        "background_trials_completed": background_trials,
        "median_background_load": {c: round(statistics.median(v), 3) for c, v in loads.items()},
        "per_arch": [
            {
                "summary": arch.summary(),
                "flops": t.user_attrs["flops"],
                **{f"{c}_ms": [round(m, 5) for m in medians[c][i]] for c in conditions},
            }
            for i, (arch, t) in enumerate(zip(archs, chosen))
        ],
    }
    for c in others:
        s = result[f"{c}_vs_alone_paired"]
        print(f"{c} vs alone, paired ({s['n']}): {percent(s)}; median |.| {s['median_abs']:.1%}")
    print(
        f"spread of alone: median |.| {result['alone_vs_other_alone']['median_abs']:.1%}; "
        f"load during the timed calls: {result['median_background_load']}"
    )
    write_result(args.out or workdir / f"scale_out_interference_{args.workers}w.json", result)


if __name__ == "__main__":
    main()

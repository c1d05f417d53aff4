"""Does the measuring process matter? The same architectures measured ABAB in this process and in
a spawned worker-like process (torch limited to 1 thread, as a local search worker), seconds apart.

    python -m benchmarks.latency_process_ab --storage sqlite:///<database of a search> \\
        --study agree-2w --n 20 --repeats 3

The architectures are the first ``--n`` COMPLETE trials of a study (e.g. the database a
scale_out_agreement run leaves in its --workdir), measured with the study's own profiler and
settings. Prints per architecture the child/parent ratio of the medians, then the median over
architectures.
"""

from __future__ import annotations

import multiprocessing
import statistics

from benchmarks._harness import argument_parser, finished_trials, write_result


def _child(conn, name: str, settings: dict) -> None:
    import torch

    from latency_models import create_profiler
    from search_spaces.arch import arch_from_dict

    torch.set_num_threads(1)
    profiler = create_profiler(name, **settings)
    while (arch := conn.recv()) is not None:
        conn.send(profiler.measure(arch_from_dict(arch)).median)


def main() -> None:
    from latency_models import create_profiler
    from nas.study import trial_arch

    parser = argument_parser(__doc__)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    trials = finished_trials(args.storage, args.study)[: args.n]
    name, settings = trials[0].user_attrs["profiler"]["name"], trials[0].user_attrs["profiler"]["settings"]
    spawn = multiprocessing.get_context("spawn")
    parent, child_end = spawn.Pipe()
    child = spawn.Process(target=_child, args=(child_end, name, settings))
    child.start()
    profiler = create_profiler(name, **settings)
    rows = []
    try:
        for t in trials:
            here, there = [], []
            for _ in range(args.repeats):  # A, B, A, B, ...
                here.append(profiler.measure(trial_arch(t)).median)
                parent.send(t.user_attrs["arch"])
                there.append(parent.recv())
            ratio = statistics.median(there) / statistics.median(here) - 1
            rows.append({"trial": t.number, "here_ms": here, "child_ms": there, "child_over_here": ratio})
            print(f"trial {t.number}: child/parent {ratio:+.3f}  here {here}  child {there}", flush=True)
    finally:
        parent.send(None)
        child.join()
    ratios = [r["child_over_here"] for r in rows]
    print(f"median child/parent - 1: {statistics.median(ratios):+.4f} (mean {statistics.mean(ratios):+.4f})")
    write_result(args.out, {"study": args.study, "profiler": name, "settings": settings, "rows": rows})


if __name__ == "__main__":
    main()

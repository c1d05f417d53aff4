"""How repeatable is one latency measurement? Each architecture measured ``--repeats`` times.

    python -m benchmarks.latency_repeatability --out latency_repeatability_ort_cpu.json
    python -m benchmarks.latency_repeatability profiler=torch profiler.device=cuda \\
        --out latency_repeatability_torch_cuda_graph.json                # on the GPU machine

Per space: the smallest, the largest and random members (``--archs`` in all), each measured
``--repeats`` times round-robin over the set (so a slow stretch of the machine shows as it would
between trials), with the profiler of the composed config (overrides as for ``nas``:
``profiler=...``, ``profiler.KEY=VALUE``). Prints the CV of each architecture's medians (mean,
median, max over the set). The goal the profilers were built to: CV <= 2 %.
"""

from __future__ import annotations

import random
import statistics

from benchmarks._harness import (
    add_config_arguments,
    argument_parser,
    build_profiler,
    load_space,
    write_result,
)


def main() -> None:
    parser = argument_parser(__doc__)
    add_config_arguments(parser, example="profiler=torch profiler.device=cuda")
    parser.add_argument("--spaces", nargs="+", default=["vit", "hybrid"])
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    profiler = build_profiler(args.overrides, args.config_dir)
    report = {"name": profiler.name, "profiler": profiler.settings(), "spaces": {}}
    cv = f"CV of {args.repeats} medians"
    print(f"| space | profiler | architectures | median ms (range) | {cv}: mean | median | max |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.spaces:
        space = load_space(name, args.overrides, args.config_dir)
        rng = random.Random(0)
        archs = [space.smallest(), space.largest()] + [space.sample(rng) for _ in range(args.archs - 2)]
        medians = [[] for _ in archs]
        for _ in range(args.repeats):
            for i, arch in enumerate(archs):
                medians[i].append(profiler.measure(arch).median)
        cvs = [statistics.pstdev(m) / statistics.fmean(m) for m in medians]
        report["spaces"][name] = {"medians": medians, "cv": cvs, "archs": [a.summary() for a in archs]}
        centre = [statistics.median(m) for m in medians]
        print(
            f"| {name} | {profiler.name} | {len(archs)} | {statistics.median(centre):.3f} "
            f"({min(centre):.3f}-{max(centre):.3f}) | {statistics.fmean(cvs):.2%} | "
            f"{statistics.median(cvs):.2%} | {max(cvs):.2%} |",
            flush=True,
        )
    write_result(args.out, report)


if __name__ == "__main__":
    main()

"""Repeatability of measured latency: each architecture measured 5 times (round-robin over the
set, so slow drift of the machine shows), CV of its 5 medians. Goal: CV <= 2 %.

    python benchmarks/latency_repeatability.py --out benchmarks/results/repeat_ort_cpu.json
    python benchmarks/latency_repeatability.py --profiler torch --set device=cuda --out ...   # GPU machine
"""

from __future__ import annotations

import argparse
import json
import random
import statistics

from _spaces import load_space, parse_settings

from latency_models import create_profiler
from latency_models.hardware import fingerprint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiler", default="onnxruntime")
    parser.add_argument("--set", nargs="*", default=[], help="profiler settings, key=value")
    parser.add_argument("--spaces", nargs="+", default=["vit", "hybrid"])
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    profiler = create_profiler(args.profiler, **parse_settings(args.set))
    report = {"profiler": profiler.settings(), "name": profiler.name, "hardware": fingerprint(), "spaces": {}}
    print("| space | profiler | architectures | median ms (range) | CV of 5 medians: mean | median | max |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.spaces:
        space = load_space(name)
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
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()

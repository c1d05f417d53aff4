"""Learned latency predictor accuracy on held-out architectures of each shipped space.

Fits exactly as ``nas latency fit`` does (same functions: measured samples with their blocks
interleaved, then every block of the space), then measures fresh held-out architectures and
compares. Writes one JSON per run (summary + every architecture) and prints a Markdown table.

    python benchmarks/predictor_accuracy.py --profiler onnxruntime --fit 200 --eval 200 \
        --out benchmarks/results/predictor_ort_cpu.json
    python benchmarks/predictor_accuracy.py --profiler torch --set device=cuda \
        --out benchmarks/results/predictor_torch_cuda.json          # on the GPU machine
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _spaces import load_space, parse_settings

from latency_models import create_profiler
from latency_models.hardware import fingerprint, fingerprint_id
from latency_models.predictor import (
    Predictor,
    fill_table,
    fit_samples,
    held_out_errors,
    space_blocks,
    summarise,
    unique_samples,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiler", default="onnxruntime")
    parser.add_argument("--set", nargs="*", default=[], help="profiler settings, key=value")
    parser.add_argument("--spaces", nargs="+", default=["vit", "hybrid"])
    parser.add_argument("--fit", type=int, default=200)
    parser.add_argument("--eval", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", default=None, help="SQLAlchemy URL of a latency table (optional)")
    parser.add_argument(
        "--passes",
        type=int,
        default=1,
        help="also measure the held-out set this many times in all, in "
        "separate sweeps, and score against the median of the passes (machine-speed phases average out)",
    )
    parser.add_argument("--save-dir", default=None, help="write each fitted predictor here")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    profiler = create_profiler(args.profiler, **parse_settings(args.set))
    cache = None
    if args.storage:
        from latency_models.cache import LatencyCache

        cache = LatencyCache(args.storage)
    described = {"name": profiler.name, "unit": profiler.unit, "settings": profiler.settings()}
    report = {"profiler": described, "hardware": fingerprint(), "spaces": {}}
    for name in args.spaces:
        space = load_space(name)
        predictor = Predictor(described, fingerprint(), fingerprint_id(), space=name)
        start = time.perf_counter()
        archs = unique_samples(space, args.fit, seed=args.seed)
        fit_samples(predictor, profiler, archs, cache)
        fill_table(predictor, profiler, space_blocks(space, seed=args.seed), cache)
        predictor.calibrate()
        fit_seconds = time.perf_counter() - start
        held_out = unique_samples(space, args.eval, seed=args.seed + 7919, exclude={a.key() for a in archs})
        start = time.perf_counter()
        rows = held_out_errors(predictor, profiler, held_out, cache)
        summary = summarise(rows) | {
            "fit_samples": len(archs),
            "blocks": len(predictor.table),
            "blocks_added_at_eval": sum(r["new_blocks"] for r in rows),
            "fit_seconds": round(fit_seconds, 1),
            "eval_seconds": round(time.perf_counter() - start, 1),
            "weights": dict(zip(("intercept", "ends", "mixer", "mlp", "conv"), predictor.weights)),
        }
        if args.passes > 1:
            passes = [[r["measured_ms"] for r in rows]]
            for _ in range(args.passes - 1):  # sweeps over the whole set: a slow phase hits few
                passes.append([profiler.measure(arch).median for arch in held_out])
            robust = [
                r | {"measured_ms": float(np.median(m)), "error": r["predicted_ms"] / float(np.median(m)) - 1}
                for r, m in zip(rows, zip(*passes))
            ]
            summary["median_of_passes"] = summarise(robust) | {"passes": args.passes}
            summary["pass_spread"] = float(np.median([np.ptp(m) / np.median(m) for m in zip(*passes)]))
            report_passes = {"passes": passes}
        else:
            report_passes = {}
        if args.save_dir:
            predictor.save(Path(args.save_dir) / f"{name}-{profiler.name}.json")
        report["spaces"][name] = {"summary": summary, "rows": rows} | report_passes
        print(json.dumps({name: summary}), flush=True)
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    device = report["hardware"].get("gpu") if profiler.settings().get("device", "cpu") != "cpu" else None
    print(f"\n{profiler.name} {profiler.settings()} on {device or report['hardware']['cpu']}\n")
    print(
        "| space | held-out | within ±10 % | within ±5 % | MAPE | RMSE | worst | one prediction "
        "| one measurement |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, entry in report["spaces"].items():
        s = entry["summary"]
        print(
            f"| {name} | {s['n']} | {s['within_10pct']:.1%} | {s['within_5pct']:.1%} | {s['mape_pct']:.2f} % "
            f"| {s['rmse_ms']:.4f} ms | {s['worst_error']:+.1%} | {s['predict_us']:.0f} µs "
            f"| {s['measure_s']:.2f} s |"
        )
        if "median_of_passes" in s:
            m = s["median_of_passes"]
            print(
                f"| {name}, vs median of {m['passes']} passes | {m['n']} | {m['within_10pct']:.1%} "
                f"| {m['within_5pct']:.1%} | {m['mape_pct']:.2f} % | {m['rmse_ms']:.4f} ms "
                f"| {m['worst_error']:+.1%} | | |"
            )


if __name__ == "__main__":
    main()

"""How accurate is the learned latency predictor on architectures it was not fitted on?

    python -m benchmarks.latency_predictor --fit 200 --eval 200 \\
        --storage sqlite:////tmp/bench_latency.db --out latency_predictor_ort_cpu.json
    python -m benchmarks.latency_predictor --passes 3 --storage sqlite:////tmp/bench_latency.db ...
    python -m benchmarks.latency_predictor profiler=torch profiler.device=cuda --out ...  # GPU machine

Per space, the same functions as ``nas latency fit`` / ``nas latency eval``
(latency_models.predictor): ``--fit`` measured members with their blocks interleaved, then every
block of the space, calibration; then ``--eval`` fresh members (none in the fit set, the seed
offset nas latency eval uses), predicted, then measured once each. ``--passes N`` measures the
held-out set N times in all, in whole sweeps, and also scores against the median of the passes
(a slow phase of the machine then hits one sweep, not the ground truth). With ``--storage`` the
measurements go through that latency table (a rerun measures nothing twice). The profiler is
the composed config's (overrides as for ``nas``). Writes every architecture's figures and prints
a Markdown table.
"""

from __future__ import annotations

import json
import time

import numpy as np

from benchmarks._harness import (
    add_config_arguments,
    argument_parser,
    build_profiler,
    load_space,
    write_result,
)
from latency_models.hardware import fingerprint, fingerprint_id
from latency_models.predictor import (
    Predictor,
    fill_table,
    fit_samples,
    held_out_errors,
    predictor_file,
    space_blocks,
    summarise,
    unique_samples,
)
from nas.latency import HELD_OUT_SEED_OFFSET


def evaluate_space(name: str, profiler, cache, args) -> dict:
    space = load_space(name, args.overrides, args.config_dir)
    described = {"name": profiler.name, "unit": profiler.unit, "settings": profiler.settings()}
    predictor = Predictor(described, fingerprint(), fingerprint_id(), space=name)
    start = time.perf_counter()
    archs = unique_samples(space, args.fit, seed=args.seed)
    fit_samples(predictor, profiler, archs, cache)
    fill_table(predictor, profiler, space_blocks(space, seed=args.seed), cache)
    predictor.calibrate()
    fit_seconds = time.perf_counter() - start
    exclude = {a.key() for a in archs}
    held_out = unique_samples(space, args.eval, seed=args.seed + HELD_OUT_SEED_OFFSET, exclude=exclude)
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
    entry = {"summary": summary, "rows": rows}
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
        entry["passes"] = passes
    if args.save_dir:
        predictor.save(predictor_file(args.save_dir, name, profiler))
    return entry


def print_table(report: dict) -> None:
    print(
        "\n| space | held-out | within ±10 % | within ±5 % | MAPE | RMSE | worst | one prediction "
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


def main() -> None:
    parser = argument_parser(__doc__)
    add_config_arguments(parser, example="profiler=torch profiler.device=cuda")
    parser.add_argument("--spaces", nargs="+", default=["vit", "hybrid"])
    parser.add_argument("--fit", type=int, default=200)
    parser.add_argument("--eval", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", default=None, help="SQLAlchemy URL of a latency table (optional)")
    parser.add_argument("--passes", type=int, default=1, help="measure the held-out set this often in all")
    parser.add_argument("--save-dir", default=None, help="write each fitted predictor here")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    profiler = build_profiler(args.overrides, args.config_dir)
    cache = None
    if args.storage:
        from latency_models.cache import LatencyCache

        cache = LatencyCache(args.storage)
    report = {"profiler": {"name": profiler.name, "unit": profiler.unit, "settings": profiler.settings()}}
    report["spaces"] = {}
    for name in args.spaces:
        report["spaces"][name] = evaluate_space(name, profiler, cache, args)
        print(json.dumps({name: report["spaces"][name]["summary"]}), flush=True)
        write_result(args.out, report)  # after each space: a long run keeps what it has
    print_table(report)


if __name__ == "__main__":
    main()

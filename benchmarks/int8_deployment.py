"""Float against int8 on ONNX Runtime CPU (1 thread): latency and top-1 of a trained study's front
members and baselines, and how the front changes.

    python -m benchmarks.int8_deployment --dir RUN --out benchmarks/results/int8_deployment.json \\
        --markdown benchmarks/results/int8_deployment.md -- dataset=fashion_mnist dataset.root=DATA

Reads the study in ``--dir`` (``nas.db`` and its ``cache_dir``) after its Pareto front and the
timm baselines were trained on their own (``nas run``, or ``nas train front=true`` and ``nas train
timm_baselines=true``). For each trained model (its saved weights, the run with the best top-1
per front member or baseline): the float ONNX model and the int8 model the ONNX Runtime profiler
measures with ``quantize=int8`` (latency_models.quantize: QDQ, calibrated on the profiler's
``calibration_images`` images of the training split), each timed by the profiler, one thread,
one model at a time (``slots=0``), float and int8 back to back; top-1 of both on the dataset's
test split (``--images`` caps it), and the share of test images on which they agree. Then the
Pareto front of the found models under each (latency, top-1), and the rank correlation of their
latencies. The overrides after ``--`` are the dataset settings of the study's search; profiler
settings (``profiler.runs=...``) go there too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks._harness import argument_parser, compose, write_result


def pareto(rows: list[dict[str, Any]], kind: str) -> set[str]:
    """Names of the rows on the (latency min, top-1 max) front of ``kind`` (float or int8)."""
    ordered = sorted(rows, key=lambda r: (r[f"{kind}_ms"], -r[f"{kind}_top1"]))
    front, best = set(), -1.0
    for r in ordered:
        if r[f"{kind}_top1"] > best:
            front.add(r["model"])
            best = r[f"{kind}_top1"]
    return front


def kendall_tau(a: list[float], b: list[float]) -> float | None:
    """Kendall's tau-a of two paired lists (None for fewer than two pairs)."""
    n = len(a)
    if n < 2:
        return None
    concordant = sum((a[i] - a[j]) * (b[i] - b[j]) > 0 for i in range(n) for j in range(i + 1, n)) - sum(
        (a[i] - a[j]) * (b[i] - b[j]) < 0 for i in range(n) for j in range(i + 1, n)
    )
    return round(concordant / (n * (n - 1) / 2), 4)


def trained_models(cfg, study, data, split, cache_dir: Path) -> list[tuple[str, str, Any]]:
    """(label, kind, model with its trained weights) of every retrained front member and every
    trained baseline (the record with the best score of each)."""
    import torch

    from nas.records import RunRecord
    from nas.study import trial_arch
    from nas.supernet_training import channel_stats
    from nas.training.baselines import normalized_timm_model
    from nas.training.loop import WEIGHTS, run_dir_for
    from nas.training.recipe import RetrainRecipe
    from search_spaces.networks import build_model

    front = {t.number: t for t in study.best_trials}
    best: dict[tuple[str, str], RunRecord] = {}
    for record in RunRecord.all_in(dict(study.user_attrs)).values():
        if record.score is None or record.stopped or record.kind == "arch":
            continue
        if record.kind == "trial" and record.trial not in front:
            continue
        key = (record.kind, record.name)
        if key not in best or record.score > best[key].score:
            best[key] = record
    mean, std = channel_stats(data, split[0])
    out = []
    for (kind, name), record in sorted(best.items(), key=lambda kv: (kv[0][0] != "trial", kv[0][1])):
        recipe = RetrainRecipe(**record.recipe)
        weights = run_dir_for(cache_dir, data, name, recipe, record.init or "scratch") / WEIGHTS
        if not weights.is_file():
            print(f"{kind} {name}: no weights at {weights}; skipped")
            continue
        try:
            if kind == "trial":
                model = build_model(trial_arch(front[int(name)]))
                label = f"trial {name} ({front[int(name)].user_attrs['summary']})"
            else:  # built with the baselines group's arguments, as nas train built it
                kwargs = dict(cfg.baselines.models.get(name, {}) or {})
                model = normalized_timm_model(name, data, kwargs, mean, std)
                label = name
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        except Exception as e:  # noqa: BLE001 - e.g. a baseline trained with other arguments
            print(
                f"{kind} {name}: cannot rebuild its trained model ({str(e).splitlines()[0][:200]}); skipped"
            )
            continue
        out.append((label, kind, model.eval()))
    return out


def measure(label: str, kind: str, model, profilers, shape, test) -> dict[str, Any]:
    """Float and int8 figures of one model (float then int8, back to back)."""
    import numpy as np
    import torch

    from latency_models.onnx_io import to_onnx
    from latency_models.quantize import predict
    from nas.quantized import as_float

    float_profiler, int8_profiler = profilers
    images, labels = as_float(test.images), test.labels.numpy()
    float_onnx = to_onnx(model, shape)
    quantized = int8_profiler.quantized(model, shape)
    logits = {}
    for name, onnx_bytes in (("float", float_onnx), ("int8", quantized.onnx)):
        logits[name] = predict(onnx_bytes, images, threads=max(1, torch.get_num_threads()))
    float_ms = float_profiler.measure_module(model, shape)
    int8_ms = int8_profiler.measure_module(model, shape)
    row = {
        "model": label,
        "kind": kind,
        "params": sum(p.numel() for p in model.parameters()),
        "float_ms": round(float_ms.median, 5),
        "int8_ms": round(int8_ms.median, 5),
        "float_spread": float_ms.spread,
        "int8_spread": int8_ms.spread,
        "quiet": float_ms.quiet and int8_ms.quiet,
        "speed_up": round(float_ms.median / int8_ms.median, 3),
        "float_top1": round(100.0 * float((logits["float"].argmax(1) == labels).mean()), 3),
        "int8_top1": round(100.0 * float((logits["int8"].argmax(1) == labels).mean()), 3),
        "agreement": round(float((logits["float"].argmax(1) == logits["int8"].argmax(1)).mean()), 5),
        "max_abs_logit_diff": round(float(np.abs(logits["float"] - logits["int8"]).max()), 5),
        "quantize_s": quantized.seconds,
    }
    row["top1_drop"] = round(row["float_top1"] - row["int8_top1"], 3)
    print(
        f"{label}: {row['float_ms']:.4g} -> {row['int8_ms']:.4g} ms (x{row['speed_up']:.2f}), top-1 "
        f"{row['float_top1']:.2f} -> {row['int8_top1']:.2f} %, agreement {row['agreement']:.1%}",
        flush=True,
    )
    return row


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Study `{result['study']}`: float vs int8 on ONNX Runtime CPU, 1 thread "
        f"({result['cpu']}; {result['test_images']} test images; int8: {result['scheme']['format']}, "
        f"calibrated on {result['calibration']}).",
        "",
        "| model | params | float ms | int8 ms | speed-up | float top-1 | int8 top-1 | drop | agreement "
        "| float front | int8 front |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: | :---: |",
    ]
    for r in result["rows"]:
        on = "yes" if r["model"] in result["float_front"] else ""
        on8 = "yes" if r["model"] in result["int8_front"] else ""
        if r["kind"] != "trial":
            on = on8 = "(baseline)"
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['float_ms']:.4f} | {r['int8_ms']:.4f} | "
            f"{r['speed_up']:.2f}x | {r['float_top1']:.2f} | {r['int8_top1']:.2f} | {r['top1_drop']:+.2f} | "
            f"{r['agreement']:.1%} | {on} | {on8} |"
        )
    s = result["summary"]
    lines += [
        "",
        f"Found models: median speed-up {s['found_median_speed_up']}x, median top-1 drop "
        f"{s['found_median_drop']} points; baselines: median speed-up {s['baseline_median_speed_up']}x, "
        f"median drop {s['baseline_median_drop']} points. Front of the found models: "
        f"{len(result['float_front'])} members in float, {len(result['int8_front'])} in int8, "
        f"{len(set(result['float_front']) & set(result['int8_front']))} on both; Kendall tau of their "
        f"latencies float vs int8 {s['latency_rank_tau']}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("overrides", nargs="*", help="the dataset settings of the search (after --)")
    parser.add_argument("--dir", required=True, help="folder of the study (nas.db, its cache_dir)")
    parser.add_argument("--study", default=None)
    parser.add_argument("--images", type=int, default=0, help="test images to score (0: all)")
    parser.add_argument("--out", default=None, help="result JSON")
    parser.add_argument("--markdown", default=None, help="the table as markdown")
    args = parser.parse_args()

    import statistics

    import torch

    from latency_models.hardware import fingerprint
    from latency_models.quantize import SCHEME
    from nas.config import instantiate
    from nas.latency import build_profiler
    from nas.quantized import calibration_images
    from nas.records import STUDY_ATTR
    from nas.study import load_existing_study, reading_storage

    work = Path(args.dir).resolve()
    measuring = ["profiler=onnxruntime", "profiler.threads=1", "profiler.slots=0", *args.overrides]
    cfg = compose(measuring)
    cache_dir = Path(cfg.cache_dir).expanduser()
    cache_dir = cache_dir if cache_dir.is_absolute() else work / cache_dir  # as the study's commands saw it
    with reading_storage(f"sqlite:///{work / 'nas.db'}") as storage:
        study = load_existing_study(storage, args.study)
        info = study.user_attrs.get(STUDY_ATTR, {})
    data = instantiate("dataset", cfg.dataset).load()
    if info.get("data_fingerprint") not in (None, data.fingerprint()):
        raise SystemExit(f"dataset: study {study.study_name!r} was searched on {info.get('dataset')!r}")
    split = data.split(**info["split"])
    test = data.test if data.test is not None else data.subset(split[1])
    test = test.subset(torch.arange(min(len(test), args.images or len(test))))
    float_profiler = build_profiler(cfg.profiler)
    int8_profiler = build_profiler(compose([*measuring, "profiler.quantize=int8"]).profiler)
    calibration = calibration_images(data, split[0], int8_profiler.calibration_images, info["split"]["seed"])
    int8_profiler.calibrate_with(calibration)
    shape = (data.in_channels, data.image_size, data.image_size)
    models = trained_models(cfg, study, data, split, cache_dir)
    if not models:
        raise SystemExit(f"--dir: study {study.study_name!r} has no trained front members or baselines")
    rows = []

    def median(values):
        return round(statistics.median(values), 3) if values else None

    def written(rows: list[dict[str, Any]], final: bool) -> None:
        """The result so far, written after every model: a cut run keeps what it measured."""
        found = [r for r in rows if r["kind"] == "trial"]
        baselines = [r for r in rows if r["kind"] != "trial"]
        result = {
            "study": study.study_name,
            "cpu": fingerprint().get("cpu"),
            "test_images": len(test),
            "scheme": SCHEME,
            "calibration": calibration.source,
            "float_profiler": {"name": float_profiler.name, "settings": float_profiler.settings()},
            "int8_profiler": {"name": int8_profiler.name, "settings": int8_profiler.settings()},
            "complete": final,
            "models": len(models),
            "rows": rows,
            "float_front": sorted(pareto(found, "float")),
            "int8_front": sorted(pareto(found, "int8")),
            "summary": {
                "found_median_speed_up": median([r["speed_up"] for r in found]),
                "found_median_drop": median([r["top1_drop"] for r in found]),
                "baseline_median_speed_up": median([r["speed_up"] for r in baselines]),
                "baseline_median_drop": median([r["top1_drop"] for r in baselines]),
                "latency_rank_tau": kendall_tau(
                    [r["float_ms"] for r in found], [r["int8_ms"] for r in found]
                ),
            },
        }
        table = markdown(result)
        if final:
            print(table)
        if args.markdown:
            Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
            Path(args.markdown).write_text(table)
        write_result(args.out, result, quiet=not final)

    for label, kind, model in models:
        try:
            rows.append(measure(label, kind, model, (float_profiler, int8_profiler), shape, test))
        except Exception as e:  # noqa: BLE001 - a model the tooling cannot quantize: say so, go on
            print(f"{label}: failed ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})")
        written(rows, final=False)
    written(rows, final=True)


if __name__ == "__main__":
    main()

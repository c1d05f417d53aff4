"""How much faster does a stand-alone training run with its forward + backward replayed as a CUDA
graph (``retrain.cuda_graphs``), and does every baseline capture?

    python -m benchmarks.retrain_graphs dataset=imagefolder dataset.root=DIR retrain=gpu \\
        --epochs 1 --out retrain_graphs.json

Each model of the ``baselines`` group (or ``--models``) trained for ``--epochs`` epochs with the
given recipe, alone on the GPU, eagerly and then graphed, from the same seed: steps per second of
each, whether the capture held, and the validation top-1 both ways (the same computation: close,
not bit-equal, as cuDNN picks algorithms per run). With ``--together E``, then all of them
(``--copies`` times each) for E epochs at once as ``nas run`` trains them (``ProcessTrainer``,
NVIDIA MPS where available), once per ``--modes`` entry (eager or graphed, so many at once): the
wall time of the whole set.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from benchmarks._harness import argument_parser, write_result


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("overrides", nargs="*", help="config overrides (dataset, retrain)")
    parser.add_argument(
        "--models", nargs="*", default=None, help="timm models (default: the baselines group)"
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cuda", help="cuda (cpu: only to try the script)")
    parser.add_argument("--together", type=int, default=0, help="epochs of the all-at-once runs (0: none)")
    parser.add_argument("--copies", type=int, default=1, help="each model this often in the all-at-once runs")
    parser.add_argument(
        "--modes",
        nargs="*",
        default=["eager@auto", "graphed@auto"],
        help="all-at-once runs as MODE@CONCURRENT (eager|graphed, trainings at once or auto)",
    )
    parser.add_argument(
        "--alone", action=argparse.BooleanOptionalAction, default=True, help="the one-at-a-time runs"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch

    from nas.config import compose, instantiate
    from nas.supernet_training import channel_stats
    from nas.training.baselines import normalized_timm_model
    from nas.training.loop import retrain

    cfg = compose([f"device={args.device}", *args.overrides])
    data = instantiate("dataset", cfg.dataset).load()
    train_idx, val_idx = data.split(val_fraction=0.1, seed=0)
    mean, std = channel_stats(data, train_idx)
    recipe = dataclasses.replace(instantiate("retrain", cfg.retrain), epochs=args.epochs, warmup_epochs=0)
    baselines = instantiate("baselines", cfg.baselines).models
    names = args.models or list(baselines)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in names if args.alone else []:
            row: dict = {"model": name}
            for graphs in (False, True):
                run = dataclasses.replace(recipe, cuda_graphs=graphs)
                model = normalized_timm_model(name, data, baselines.get(name, {}), mean, std)
                started = time.perf_counter()
                result = retrain(
                    model, data, train_idx, val_idx, run, Path(work) / f"{name}-{graphs}", args.device
                )
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - started
                steps = (len(train_idx) // min(recipe.batch_size, len(train_idx))) * args.epochs
                mode = "graphed" if graphs else "eager"
                row[mode] = {
                    "seconds": round(seconds, 2),
                    "steps_per_s": round(steps / result.train_seconds, 1),
                    "val_top1": result.val_top1,
                    "graphed": result.graphed,
                }
            row["speedup"] = round(row["graphed"]["steps_per_s"] / row["eager"]["steps_per_s"], 2)
            print(row, flush=True)
            rows.append(row)
    together = {}
    if args.together:
        together = _together(names, baselines, data, train_idx, val_idx, mean, std, recipe, args)
    result = {"epochs": args.epochs, "batch_size": recipe.batch_size, "models": rows, "together": together}
    write_result(args.out, result)


def _together(names, baselines, data, train_idx, val_idx, mean, std, recipe, args) -> dict:
    """Wall time of training every model (``--copies`` each) at once, per ``--modes`` entry."""
    import functools

    from rich.console import Console

    from nas.run import gpu_sharing
    from nas.training.baselines import normalized_timm_model
    from nas.training.candidates import TimmBaseline
    from nas.training.trainers import ProcessTrainer, TrainJobs

    out = {"epochs": args.together, "trainings": len(names) * args.copies, "runs": []}
    for entry in args.modes:
        mode, _, concurrent = entry.partition("@")
        graphs = mode == "graphed"
        run = dataclasses.replace(recipe, epochs=args.together, cuda_graphs=graphs)
        candidates = [
            TimmBaseline(
                f"{name}-{copy}",
                functools.partial(normalized_timm_model, name, data, baselines.get(name, {}), mean, std),
            )
            for name in names
            for copy in range(args.copies)
        ]
        with tempfile.TemporaryDirectory() as work:
            jobs = TrainJobs(
                candidates, data, train_idx, val_idx, run, "scratch", args.device, 600.0, Path(work), False
            )
            trainer = ProcessTrainer("auto" if concurrent in ("", "auto") else int(concurrent))
            started = time.perf_counter()
            with gpu_sharing(True, Console()):
                results = trainer.run(jobs, Console(quiet=True))
            run_out = {
                "mode": mode,
                "wall_s": round(time.perf_counter() - started, 1),
                "concurrent": trainer.processes(jobs),
                "train_s": {n: r.train_seconds for n, r in results.items()},
                "graphed": sum(r.graphed for r in results.values()),
            }
        out["runs"].append(run_out)
        print(run_out, flush=True)
    return out


if __name__ == "__main__":
    main()

"""Supernet benchmark: training time, inherited top-1 of the extremes, cost per trial.

    python benchmarks/supernet_bench.py --dataset fashion_mnist --root ../shared/data \
        --epochs 5 --device cpu --trials 20 --out bench.json

Trains the vit space's supernet with the default recipe (epochs overridable) on the chosen
dataset, reports the validation-split top-1 (and Fashion-MNIST test-set top-1) of the largest and
smallest members with inherited weights, and times what one search trial costs, split into
scoring (extract + evaluate on the validation split + FLOP count) and latency measurement
(ONNX Runtime, 1 thread). Imports neither optuna nor the study code, so it runs on a GPU machine
that has only torch, onnxruntime, hydra-core and rich.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from latency_models import create_profiler  # noqa: E402
from latency_models.flops import count_flops  # noqa: E402
from latency_models.hardware import fingerprint  # noqa: E402
from nas.config import compose, instantiate, instantiate_space, to_container  # noqa: E402
from nas.train import evaluate, train_supernet  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="vit")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--root", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--trials", type=int, default=20, help="random members timed for cost per trial")
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary folder")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    overrides = [f"+space={args.space}", f"dataset={args.dataset}"]
    if args.dataset != "embedded":
        overrides.append(f"dataset.root={args.root}")
    if args.epochs is not None:
        overrides.append(f"supernet.epochs={args.epochs}")
    cfg = compose(overrides)
    dataset = instantiate("dataset", cfg.dataset)
    data = dataset.load()
    space = instantiate_space(cfg.space, data)
    recipe = instantiate("supernet", cfg.supernet)
    split = {"val_fraction": dataset.val_fraction, "seed": cfg.seed}
    train_idx, val_idx = data.split(**split)
    cache_dir = Path(args.cache_dir or tempfile.mkdtemp(prefix="nas-bench-"))

    trained = train_supernet(
        space,
        to_container(cfg.space),
        data,
        train_idx,
        val_idx,
        split,
        recipe,
        cache_dir,
        device=args.device,
        checkpoint_every_s=120,
    )
    result = {
        "space": space.name,
        "dataset": data.name,
        "train_images": len(train_idx),
        "val_images": len(val_idx),
        "recipe": trained.meta["recipe"],
        "device": trained.meta["device"],
        "train_seconds": trained.meta["train_seconds"],
        "reused_cache": trained.reused,
        "val_top1": {"largest": trained.meta["largest_top1"], "smallest": trained.meta["smallest_top1"]},
        "hardware": fingerprint(),
    }
    if args.dataset == "fashion_mnist":
        from nas.data import FashionMNIST

        test = FashionMNIST(args.root, train=False).load()
        result["test_top1"] = {
            which: evaluate(trained.net, getattr(space, which)(), test.images, test.labels)
            for which in ("largest", "smallest")
        }

    # Cost of one trial, as the search pays it (on the CPU, where latency is measured).
    net = trained.net.cpu()
    profiler = create_profiler("onnxruntime")
    val_images, val_labels = data.images[val_idx], data.labels[val_idx]
    rng = random.Random(123)
    scoring, measuring = [], []
    for _ in range(args.trials):
        arch = space.sample(rng)
        start = time.perf_counter()
        model = net.extract(arch)
        evaluate(model, None, val_images, val_labels)
        count_flops(model, arch.input_shape)
        scoring.append(time.perf_counter() - start)
        start = time.perf_counter()
        profiler.measure(arch, model)
        measuring.append(time.perf_counter() - start)
    result["per_trial_seconds"] = {
        "scoring_median": round(statistics.median(scoring), 3),
        "latency_median": round(statistics.median(measuring), 3),
        "trials_timed": args.trials,
        "val_images_scored": len(val_idx),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()

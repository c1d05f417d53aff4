"""How fast does the supernet train (CPU, GPU), how good are its extremes, and what does a trial cost?

    python -m benchmarks.supernet_training +space=vit dataset=fashion_mnist dataset.root=../shared/data \\
        supernet.epochs=3 device=cpu --trials 20 --out supernet.json

Builds the search setup of ``nas search <overrides>`` (nas.search.setup.prepare) and trains its
supernet with nas.supernet_training.train_supernet in a fresh cache folder (``--cache-dir`` to reuse or
resume one): training time, validation top-1 of the largest and smallest members with inherited
weights (and test-set top-1 where the dataset has a test split), then what one search trial
costs on this machine, timed on ``--trials`` random members: scoring (extract + top-1 on the
validation split + FLOP count) and latency measurement (the configured profiler).
"""

from __future__ import annotations

import random
import statistics
import time

import torch

from benchmarks._harness import (
    add_config_arguments,
    argument_parser,
    fresh_cache_dir,
    prepare,
    train_supernet,
    write_result,
)


def trial_cost(setup, net, n: int) -> dict:
    """Medians over ``n`` random members of a trial's two costs, as the search pays them (on
    the CPU, where candidates are scored and latency is measured)."""
    from latency_models.flops import count_flops
    from nas.supernet_training import evaluate

    net = net.cpu()
    val = setup.data.subset(setup.val_idx)
    images, labels = val.images, val.labels
    rng = random.Random(123)
    scoring, measuring = [], []
    for _ in range(n):
        arch = setup.space.sample(rng)
        start = time.perf_counter()
        model = net.extract(arch)
        evaluate(model, None, images, labels)
        count_flops(model, arch.input_shape)
        scoring.append(time.perf_counter() - start)
        start = time.perf_counter()
        setup.profiler.measure(arch, model)
        measuring.append(time.perf_counter() - start)
    return {
        "scoring_median": round(statistics.median(scoring), 3),
        "latency_median": round(statistics.median(measuring), 3),
        "profiler": setup.profiler.name,
        "trials_timed": n,
        "val_images_scored": len(images),
    }


def test_top1(setup, trained) -> dict | None:
    """Top-1 of the extremes on the dataset's test split, where it has one."""
    from nas.supernet_training import evaluate

    test = setup.data.test  # the dataset's own test split (the embedded data has none)
    if test is None:
        return None
    test = test.subset(torch.arange(len(test)))
    return {
        which: evaluate(trained.net, getattr(setup.space, which)(), test.images, test.labels)
        for which in ("largest", "smallest")
    }


def main() -> None:
    parser = argument_parser(__doc__)
    add_config_arguments(parser)
    parser.add_argument("--trials", type=int, default=20, help="random members timed for cost per trial")
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary folder")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    cache_dir = fresh_cache_dir(args.cache_dir)
    setup = prepare([*args.overrides, f"cache_dir={cache_dir}"], args.config_dir)
    trained = train_supernet(setup)
    result = {
        "space": setup.space.name,
        "dataset": setup.data.name,
        "train_images": len(setup.train_idx),
        "val_images": len(setup.val_idx),
        "recipe": trained.meta["recipe"],
        "device": trained.meta["device"],
        "steps": trained.meta.get("steps"),
        "batch_size": trained.meta.get("batch_size"),
        "train_seconds": trained.meta["train_seconds"],
        "devices": trained.meta.get("devices", 1),
        "torchrun": trained.meta.get("torchrun", False),
        "images_per_s": trained.meta.get("images_per_s"),
        "gpu_busy_share": trained.meta.get("gpu_busy_share"),
        "reused_cache": trained.reused,
        "val_top1": {"largest": trained.meta["largest_top1"], "smallest": trained.meta["smallest_top1"]},
    }
    test = test_top1(setup, trained)
    if test is not None:
        result["test_top1"] = test
    if args.trials:
        result["per_trial_seconds"] = trial_cost(setup, trained.net, args.trials)
    for key, value in result.items():
        print(f"{key}: {value}")
    write_result(args.out, result)


if __name__ == "__main__":
    main()

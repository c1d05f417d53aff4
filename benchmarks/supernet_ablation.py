"""Which parts of the supernet recipe help a short run? Variants of the recipe and space, trained alike.

    python -m benchmarks.supernet_ablation +space=hybrid supernet.epochs=2 --out ablation.json
    python -m benchmarks.supernet_ablation +space=hybrid supernet.epochs=2 \\
        --variant distill supernet.distill=true --variant labels supernet.distill=false

Each variant is a list of overrides on top of the common ones (the positional arguments); every
variant's supernet is trained by nas.supernet_training.train_supernet from the setup nas search would build
(nas.search.setup.prepare), so it follows the package's recipe (sandwich rule: the largest, the
smallest and ``supernet.num_random`` random members per step; ``supernet.distill`` for in-place
distillation from the largest; warm-up and cosine schedule, label smoothing) on the search's own
split. Prints the validation top-1 of the largest and smallest members per variant. Without
``--variant`` the default grid below runs (the ablation of BENCHMARKS.md, section 3).
"""

from __future__ import annotations

from benchmarks._harness import (
    add_config_arguments,
    argument_parser,
    fresh_cache_dir,
    prepare,
    train_supernet,
    write_result,
)

DENSE = ["space.conv_pattern=[dense]", "space.mlp_pattern=[dense]"]  # the hybrid space's keys
SOFTMAX = ["space.attention=[softmax]"]
DEFAULT_VARIANTS = [
    ("sandwich, distill", ["supernet.distill=true"]),
    ("sandwich, labels", ["supernet.distill=false"]),
    ("sandwich, distill, dense patterns", ["supernet.distill=true", *DENSE]),
    ("sandwich, distill, dense, softmax", ["supernet.distill=true", *DENSE, *SOFTMAX]),
    (
        "largest + smallest, distill, dense, softmax",
        ["supernet.distill=true", "supernet.num_random=0", *DENSE, *SOFTMAX],
    ),
    ("sandwich, labels, dense, softmax", ["supernet.distill=false", *DENSE, *SOFTMAX]),
]


def main() -> None:
    parser = argument_parser(__doc__)
    add_config_arguments(parser, example="+space=hybrid supernet.epochs=2")
    parser.add_argument(
        "--variant",
        nargs="+",
        action="append",
        metavar=("NAME", "OVERRIDE"),
        help="a variant: its name, then its overrides (repeat for more variants)",
    )
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary folder")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    variants = [(v[0], v[1:]) for v in args.variant] if args.variant else DEFAULT_VARIANTS
    cache_dir = fresh_cache_dir(args.cache_dir)
    rows = []
    print("| variant | members per step | distillation | overrides | largest | smallest | steps | time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, overrides in variants:
        setup = prepare([*args.overrides, *overrides, f"cache_dir={cache_dir}"], args.config_dir)
        trained = train_supernet(setup, progress=False)
        recipe, meta = setup.recipe, trained.meta
        row = {
            "variant": name,
            "overrides": overrides,
            "members_per_step": 2 + recipe.num_random,
            "distill": recipe.distill,
            "largest_top1": meta["largest_top1"],
            "smallest_top1": meta["smallest_top1"],
            "steps": meta.get("steps"),
            "train_seconds": meta["train_seconds"],
        }
        rows.append(row)
        print(
            f"| {name} | {row['members_per_step']} | {'yes' if recipe.distill else 'no'} | "
            f"{' '.join(overrides)} | {row['largest_top1']:.2f} % | {row['smallest_top1']:.2f} % | "
            f"{row['steps']} | {row['train_seconds']:.0f} s |",
            flush=True,
        )
    write_result(args.out, {"common_overrides": args.overrides, "variants": rows})


if __name__ == "__main__":
    main()

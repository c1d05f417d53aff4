"""Which part of the sandwich rule helps or hurts a space's supernet? A short ablation.

    python benchmarks/sandwich_ablation.py --space conf/space/hybrid.yaml --members sandwich
    python benchmarks/sandwich_ablation.py --space conf/space/hybrid.yaml --members sandwich --no-distill
    python benchmarks/sandwich_ablation.py --space conf/space/hybrid.yaml --members sandwich \
        --set 'conv_pattern=[dense]' --set 'mlp_pattern=[dense]' --set 'attention=[softmax]'

Trains the space's supernet on the embedded Fashion-MNIST subset (4,800 training images, the
search's split) for a few epochs with AdamW (lr 2e-3, wd 0.05, gradient clipping 1.0, no
schedule) and prints the validation top-1 of the largest and smallest members. Members per
step: ``largest`` (only the largest), ``big-small``, ``big-random`` (largest + one random),
``sandwich`` (largest, smallest, two random: the search's recipe). Smaller members learn from
the largest's soft predictions unless ``--no-distill``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402

from nas.data import Embedded  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", required=True, help="a space YAML file")
    parser.add_argument(
        "--members", choices=["largest", "big-small", "big-random", "sandwich"], required=True
    )
    parser.add_argument("--no-distill", action="store_true")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="override a space key: key=YAML")
    args = parser.parse_args()

    from hydra.utils import get_class

    data = Embedded(val_fraction=0.2).load()
    train, val = data.split(val_fraction=0.2, seed=0)
    x, y = data.images[train].float() / 255, data.labels[train]
    x_val, y_val = data.images[val].float() / 255, data.labels[val]
    config = yaml.safe_load(Path(args.space).read_text())
    for item in args.set:
        key, value = item.split("=", 1)
        config[key] = yaml.safe_load(value)
    space = get_class(config.pop("_target_"))(
        **config, image_size=data.image_size, in_channels=data.in_channels, num_classes=data.num_classes
    )
    torch.manual_seed(0)
    net = space.make_supernet()
    net.set_normalization(x.mean().view(1), x.std().view(1))
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.05)
    big, small = space.largest(), space.smallest()
    start, step = time.perf_counter(), 0
    for _ in range(args.epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x) - 127, 128):
            batch = order[i : i + 128]
            rng = random.Random(step)
            step += 1
            members = {
                "largest": [big],
                "big-small": [big, small],
                "big-random": [big, space.sample(rng)],
                "sandwich": [big, small, space.sample(rng), space.sample(rng)],
            }[args.members]
            optimizer.zero_grad()
            for j, arch in enumerate(members):
                logits = net(x[batch], arch)
                if j == 0:
                    loss = F.cross_entropy(logits, y[batch])
                    soft = logits.detach().softmax(-1)
                else:
                    loss = F.cross_entropy(logits, y[batch] if args.no_distill else soft)
                loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
    net.eval()
    with torch.no_grad():
        top1 = {
            name: 100 * (net(x_val, arch).argmax(1) == y_val).float().mean().item()
            for name, arch in (("largest", big), ("smallest", small))
        }
    print(
        f"{args.space} members={args.members} distill={not args.no_distill} set={args.set}: "
        f"largest {top1['largest']:.2f} %, smallest {top1['smallest']:.2f} % "
        f"({step} steps, {time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()

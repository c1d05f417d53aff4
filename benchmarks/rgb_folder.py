"""Which dataset stands for "natural RGB images the project has never seen" in the whole-path
benchmarks? An image folder made from Fashion-MNIST: resized to 32x32, coloured (each image a
random foreground tint over a random two-colour background gradient, with a little noise), saved
as JPEG files in ``train/<class>/`` and ``test/<class>/``, the layout users bring.

    python -m benchmarks.rgb_folder --root DATA --out DIR [--train 50000] [--size 32] [--workers 16]

``DATA`` holds ``FashionMNIST/raw`` (torchvision's layout). The first ``--train`` training images
(of 60,000) and all 10,000 test images; seeded, so the same command makes the same files.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks._harness import argument_parser


def _colour(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size, 3) uint8 picture of a 28x28 grey ``image``."""
    from PIL import Image

    grey = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ramp = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    background = top * (1 - ramp) + bottom * ramp  # (size, 1, 3) -> broadcast over columns
    tint = rng.uniform(40, 255, 3)
    picture = background * (1 - grey[..., None]) + tint * grey[..., None]
    picture += rng.normal(0, 6, picture.shape)
    return np.clip(picture, 0, 255).astype(np.uint8)


def _write(job: tuple[str, np.ndarray, np.ndarray, int, int, int]) -> int:
    from PIL import Image

    folder, images, labels, start, size, seed = job
    rng = np.random.default_rng(seed + start)
    for i, (image, label) in enumerate(zip(images, labels)):
        path = Path(folder) / str(int(label)) / f"{start + i:05d}.jpg"
        Image.fromarray(_colour(image, size, rng)).save(path, quality=90)
    return len(images)


def build(root: Path, out: Path, train: int = 50_000, size: int = 32, workers: int | None = None) -> None:
    from nas.data import FashionMNIST  # reads the published .gz files as they are

    workers = workers or os.cpu_count() or 1
    data = FashionMNIST(root=str(root)).load()
    for split, part, count in (("train", data, train), ("test", data.test, None)):
        images, labels = part.images[:count, 0].numpy(), part.labels[:count].numpy()
        for label in np.unique(labels):
            (out / split / str(int(label))).mkdir(parents=True, exist_ok=True)
        chunk = -(-len(images) // (workers * 4))
        jobs = [
            (
                str(out / split),
                images[s : s + chunk],
                labels[s : s + chunk],
                s,
                size,
                0 if part is data else 1,
            )
            for s in range(0, len(images), chunk)
        ]
        with ProcessPoolExecutor(workers) as pool:
            written = sum(pool.map(_write, jobs))
        print(f"{split}: {written} images in {out / split}", flush=True)


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--root", required=True, help="folder holding FashionMNIST/raw")
    parser.add_argument("--out", required=True)
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    build(Path(args.root), Path(args.out), args.train, args.size, args.workers)


if __name__ == "__main__":
    main()

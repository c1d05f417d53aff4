"""Image folders as users keep them: class folders, or train/ with val/ or test/ beside it, at
28, 32 and 64 px, gray and RGB (made from the embedded Fashion-MNIST images); the layouts that
would silently mislabel a run are one-line errors; a folder over the memory budget streams."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from PIL import Image

from nas.data import DataError, Embedded
from nas.image_folder import ImageFolder
from tests.conftest import run_in_process

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def write_folder(root: Path, size: int, rgb: bool, splits: dict[str, int], offset: int = 0) -> Path:
    """``splits``: folder name ('' for class folders at the root) -> images per class."""
    data = Embedded().load()
    start = offset
    for split, per_class in splits.items():
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            picks = torch.nonzero(data.labels == c).flatten()[start : start + per_class]
            for i in picks.tolist():
                gray = data.images[i, 0].numpy()
                pixels = np.stack([gray, (gray * 0.6).astype(np.uint8), 255 - gray], -1) if rgb else gray
                image = Image.fromarray(pixels).resize((size, size), Image.BILINEAR)
                image.save(folder / f"{i}.png")
        start += per_class
    return root


@pytest.mark.parametrize(
    "size, rgb, split",
    [(28, False, "val"), (32, True, "test"), (64, True, "validation"), (64, False, "test")],
    ids=["28px-gray-val", "32px-rgb-test", "64px-rgb-validation", "64px-gray-test"],
)
def test_train_and_eval_layouts(tmp_path, size, rgb, split):
    root = write_folder(tmp_path / "fashion shop:v2", size, rgb, {"train": 6, split: 2})
    data = ImageFolder(str(root), image_size=size, grayscale=not rgb).load()
    channels = 3 if rgb else 1
    assert not data.streamed and data.images.shape == (60, channels, size, size)
    assert data.num_classes == 10 and data.classes == sorted(CLASSES)
    assert data.test is not None and data.test.images.shape == (20, channels, size, size)
    assert data.name == "imagefolder-fashion_shop_v2"  # from the dataset, safe in file names
    assert torch.bincount(data.test.labels).tolist() == [2] * 10


def test_class_folders_at_the_root(tmp_path):
    data = ImageFolder(str(write_folder(tmp_path / "shop", 32, True, {"": 3})), image_size=32).load()
    assert data.images.shape == (30, 3, 32, 32) and data.test is None and data.name == "imagefolder-shop"


def _error(root: Path, **kw) -> str:
    with pytest.raises(DataError) as error:
        ImageFolder(str(root), image_size=28, **kw).load()
    message = str(error.value)
    assert "\n" not in message and message.startswith("dataset.")
    return message


def test_layouts_that_would_mislabel_are_errors(tmp_path):
    nested = tmp_path / "nested"  # root/<class>/train/...: the classes would be split names
    for c in ("cat", "dog"):
        write_folder(nested / c, 28, False, {"train": 1})
    assert "holds split folders" in _error(nested)

    mixed = write_folder(tmp_path / "mixed", 28, False, {"train": 1, "extra": 1})
    assert "mixes split folders" in _error(mixed)

    ok = write_folder(tmp_path / "ok", 28, False, {"train": 2, "val": 1})
    assert "is a split folder" in _error(ok / "train")  # pointed at train/: say where to point

    (ok / "train" / "coat").rename(ok / "train" / "jacket")  # val's classes differ from train's
    assert "differ" in _error(ok)

    empty = write_folder(tmp_path / "empty", 28, False, {"": 1})
    shutil.rmtree(empty / "bag")
    (empty / "bag").mkdir()  # a class with no images
    message = _error(empty)
    assert "bag" in message and "hold no images" in message


def test_a_folder_over_the_memory_budget_streams(tmp_path):
    root = write_folder(tmp_path / "big", 64, True, {"train": 10, "val": 3})
    resident = ImageFolder(str(root), image_size=64).load()
    budget_mb = resident.images.numel() / 2**20 / 2  # half of what decoding it would take
    streamed = ImageFolder(str(root), image_size=64, max_memory_mb=budget_mb, workers=2).load()
    assert streamed.streamed and streamed.images is None and len(streamed) == 100
    indices = torch.tensor([3, 97, 41, 0])
    batches = list(streamed.batches(indices, 3))
    assert [len(y) for _, y in batches] == [3, 1]
    assert torch.equal(torch.cat([x for x, _ in batches]), resident.images[indices])
    assert torch.equal(streamed.subset(indices).images, resident.images[indices])
    assert streamed.fingerprint() != resident.fingerprint()  # paths and sizes, not pixels


def test_search_on_a_streamed_folder_reports_the_test_split(tmp_path):
    root = write_folder(tmp_path / "data" / "my shop", 32, True, {"train": 12, "test": 3})
    args = [
        "search",
        "+space=tiny",
        "dataset=imagefolder",
        f"dataset.root={root}",
        "dataset.image_size=32",
        "dataset.max_memory_mb=0.1",
        "dataset.workers=1",
        "supernet.epochs=1",
        "supernet.batch_size=32",
        "profiler=flops",
        "n_trials=4",
        "progress=false",
    ]
    code, out, err = run_in_process(*args, cwd=tmp_path)
    assert code == 0, out + err
    study = optuna.load_study(study_name="tiny-imagefolder-my_shop", storage=f"sqlite:///{tmp_path}/nas.db")
    tested = study.user_attrs["test_top1"]
    assert {str(t.number) for t in study.best_trials} <= set(tested)
    assert "test top-1 %" in out and (tmp_path / "tiny-imagefolder-my_shop_pareto.csv").exists()


def test_decoded_images_are_cached_and_a_changed_file_is_decoded_again(tmp_path):
    """With a cache_dir the decoded images of a resident folder are kept (one file per split):
    a second load reads them, the same tensors; a changed image file is decoded again."""
    root = write_folder(tmp_path / "shop", 32, True, {"train": 3, "test": 1})
    cache = tmp_path / "cache"
    first = ImageFolder(str(root), image_size=32, cache_dir=str(cache)).load()
    files = sorted((cache / "data").iterdir())
    assert len(files) == 2  # train and test
    again = ImageFolder(str(root), image_size=32, cache_dir=str(cache)).load()
    assert torch.equal(again.images, first.images) and torch.equal(again.test.images, first.test.images)
    assert sorted((cache / "data").iterdir()) == files  # read, not written again
    picture = next((root / "train" / CLASSES[0]).iterdir())
    Image.new("RGB", (32, 32), (255, 0, 0)).save(picture)  # another picture under the same name
    changed = ImageFolder(str(root), image_size=32, cache_dir=str(cache)).load()
    assert not torch.equal(changed.images, first.images)
    assert (changed.images[:, 0] == 255).flatten(1).all(1).any()  # the red picture is there

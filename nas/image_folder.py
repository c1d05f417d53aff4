"""``dataset=imagefolder``: image files in class folders (the layout users bring), decoded once
and kept in memory (and in ``cache_dir``), or streamed from disk when they do not fit."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch
import torchvision
from torchvision.transforms import v2

from infra.files import atomic_path
from nas.data import EVAL_SPLITS, TRAIN_SPLIT, DataError, Dataset, ImageData
from nas.records import file_safe

DECODE_VERSION = 1  # of how image files are decoded: part of the decoded-image cache's key


class _Decoded(torchvision.datasets.ImageFolder):
    """torchvision's ImageFolder giving uint8 (C, S, S) tensors, a file it cannot read named."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.samples[index][0]
        try:
            return super().__getitem__(index)
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file among the images
            raise DataError(f"dataset.root: cannot read image '{path}': {e}") from None


class ImageFolder(Dataset):
    """Image files in class folders, resized to ``image_size`` x ``image_size``.

    Layouts (the torchvision/timm convention): ``root/<class>/<image>``, or
    ``root/train/<class>/...`` with ``root/val`` (or ``validation`` or ``test``) beside it, whose
    classes must be the same; the search holds its validation split out of ``train`` and the
    dataset's own split is kept for the final figures. A folder decoded would take more than
    ``max_memory_mb`` is streamed from disk by ``workers`` DataLoader processes (default: the
    machine's cores, at most 8); a smaller one is decoded once and kept in memory, and with a
    ``cache_dir`` the decoded images are kept there too (keyed by the files' paths, sizes and
    modification times and the decoding settings), so that the search's worker processes, the
    trainings and later runs read them instead of decoding every file again.
    """

    name = "imagefolder"

    def __init__(
        self,
        root: str,
        image_size: int = 32,
        grayscale: bool = False,
        val_fraction: float = 0.1,
        max_memory_mb: float = 4096,
        workers: int | None = None,
        cache_dir: str | None = None,
        flip_safe: bool | None = None,
    ) -> None:
        super().__init__(val_fraction, flip_safe)
        if image_size < 1:
            raise DataError(f"dataset.image_size: expected a value >= 1, got {image_size!r}")
        if max_memory_mb < 0:
            raise DataError(f"dataset.max_memory_mb: expected a value >= 0, got {max_memory_mb!r}")
        if workers is not None and workers < 0:
            raise DataError(f"dataset.workers: expected a value >= 0, got {workers!r}")
        self.root = Path(root).expanduser()
        self.image_size, self.grayscale = image_size, grayscale
        self.max_memory_mb = max_memory_mb
        self.workers = min(8, len(os.sched_getaffinity(0))) if workers is None else workers
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None

    def _layout(self) -> tuple[Path, Path, Path | None, str]:
        """(dataset root, training folder, the dataset's own val/test folder or None, name)."""
        root = self.root
        if not root.is_dir():
            raise DataError(f"dataset.root: image folder '{root.resolve()}' does not exist")
        folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        splits = [f for f in folders if f.lower() in (TRAIN_SPLIT, *EVAL_SPLITS)]
        if root.name.lower() in (TRAIN_SPLIT, *EVAL_SPLITS):
            raise DataError(
                f"dataset.root: '{root.resolve()}' is a split folder ({root.name}); point dataset.root at "
                f"'{root.parent.resolve()}', the folder that holds {TRAIN_SPLIT}/ and val/ or test/"
            )
        if not splits:
            return root, root, None, root.name
        others = [f for f in folders if f not in splits]
        if others or TRAIN_SPLIT not in [s.lower() for s in splits]:
            raise DataError(
                f"dataset.root: '{root.resolve()}' mixes split folders ({', '.join(splits)}) with "
                f"{', '.join(others[:3]) or 'no train/ folder'}; expected {TRAIN_SPLIT}/ with val/, "
                "validation/ or test/ beside it, or one folder per class"
            )
        by_name = {s.lower(): root / s for s in splits}
        evaluation = next((by_name[s] for s in EVAL_SPLITS if s in by_name), None)
        return root, by_name[TRAIN_SPLIT], evaluation, root.name

    def _read(self, folder: Path, classes: list[str] | None = None) -> _Decoded:
        for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
            nested = [
                p.name for p in cls.iterdir() if p.is_dir() and p.name.lower() in (TRAIN_SPLIT, *EVAL_SPLITS)
            ]
            if nested:
                raise DataError(
                    f"dataset.root: class folder '{cls}' holds split folders ({', '.join(nested)}); "
                    "the layout is root/train/<class>/... with root/val/<class>/..., not root/<class>/train/"
                )
        steps = [v2.Grayscale()] if self.grayscale else [v2.RGB()]
        steps += [v2.PILToTensor(), v2.Resize((self.image_size, self.image_size), antialias=True)]
        try:
            ds = _Decoded(str(folder), transform=v2.Compose(steps))
        except FileNotFoundError as e:
            empty = re.match(r"Found no valid file for the classes (.*?)\. Supported", str(e))
            if empty:
                raise DataError(
                    f"dataset.root: class folder(s) {empty.group(1)} of '{folder}' hold no images"
                ) from None
            raise DataError(f"dataset.root: {str(e).splitlines()[0]} (in '{folder}')") from None
        if len(ds.classes) < 2:
            raise DataError(
                f"dataset.root: '{folder}' holds {len(ds.classes)} class folder(s); a classifier needs 2+"
            )
        if classes is not None and ds.classes != classes:
            raise DataError(
                f"dataset.root: the classes of '{folder}' ({', '.join(ds.classes[:5])}, ...) differ from "
                f"those of the training folder ({', '.join(classes[:5])}, ...)"
            )
        return ds

    def _image_data(self, name: str, ds: _Decoded) -> ImageData:
        labels = torch.tensor(ds.targets, dtype=torch.long)
        channels = 1 if self.grayscale else 3
        data = ImageData(
            name,
            labels,
            len(ds.classes),
            channels,
            self.image_size,
            source=ds,
            workers=self.workers,
            classes=ds.classes,
        )
        bytes_needed = len(ds) * channels * self.image_size**2
        data.source_id = "\n".join(f"{path}:{os.path.getsize(path)}" for path, _ in ds.samples)
        if bytes_needed > self.max_memory_mb * 2**20:
            return data  # streamed from disk, within the memory budget
        images = self._decoded(data)
        return ImageData.of(name, images, labels, len(ds.classes), classes=ds.classes)

    def _decoded(self, data: ImageData) -> torch.Tensor:
        """Every image of ``data`` decoded (by the DataLoader workers), or read from the cache."""
        if self.cache_dir is None:
            return data.subset(torch.arange(len(data.source))).images
        files = "\n".join(f"{path}:{os.stat(path).st_mtime_ns}" for path, _ in data.source.samples)
        settings = f"{DECODE_VERSION}:{self.image_size}:{self.grayscale}\n{data.source_id}\n{files}"
        key = hashlib.sha1(settings.encode()).hexdigest()[:16]
        path = self.cache_dir / "data" / f"{file_safe(data.name)}-{key}.pt"
        shape = (len(data.source), data.in_channels, self.image_size, self.image_size)
        if path.exists():
            try:
                images = torch.load(path, weights_only=True)  # a bare tensor: nothing to execute
                if (
                    isinstance(images, torch.Tensor)
                    and tuple(images.shape) == shape
                    and images.dtype == torch.uint8
                ):
                    return images
            except Exception:  # noqa: BLE001 - a damaged cache file: decode again
                pass
        images = data.subset(torch.arange(len(data.source))).images
        with atomic_path(path) as tmp:
            torch.save(images, tmp)
        return images

    def load(self) -> ImageData:
        root, train_dir, eval_dir, name = self._layout()
        train = self._read(train_dir)
        data = self._image_data(f"imagefolder-{file_safe(name)}", train)
        if eval_dir is not None:
            data.test = self._image_data(f"{data.name}-{eval_dir.name}", self._read(eval_dir, train.classes))
        data.flip_safe = self.flip_safe
        return data

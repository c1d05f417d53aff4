"""Datasets behind the ``dataset`` conf group.

Every dataset becomes an ``ImageData``: labels in memory, images either resident (one uint8
tensor (N, C, H, W), moved to the training device when it fits) or streamed from disk through
DataLoader workers when decoding them all would exceed a memory budget. The validation split
used to score candidates is held out of the training data with a seeded, class-stratified split;
a dataset's own val/test split (``test``) is kept for the final figures, never for the search.
The default, ``embedded``, ships with the package and needs no network. (One module for the
four datasets and ImageData, a little over 400 lines: they share the split, the streaming and
the fingerprint, and each dataset class is a few lines over them.)
"""

from __future__ import annotations

import abc
import gzip
import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, Subset

from infra.errors import UserError

EMBEDDED_FILE = Path(__file__).parent / "_data" / "fashion_mnist_6k.npz"
TRAIN_SPLIT = "train"
EVAL_SPLITS = ("val", "validation", "test")  # a dataset's own held-out split, first found wins


class DataError(UserError, ValueError):
    """The dataset cannot be loaded (the message names the key or path)."""


@dataclass(eq=False)
class ImageData:
    """Labelled images, resident (``images``) or streamed (``source``, a map-style dataset of
    ``(uint8 (C, H, W) tensor, label)``)."""

    name: str
    labels: torch.Tensor  # (N,) int64
    num_classes: int
    in_channels: int
    image_size: int
    images: torch.Tensor | None = None  # (N, C, H, W) uint8 when resident
    source: Any = None  # when streamed
    source_id: str = ""  # what the streamed files are (paths and sizes), for the fingerprint
    workers: int = 0  # DataLoader workers for a streamed dataset
    classes: list[str] = field(default_factory=list)
    test: ImageData | None = None  # the dataset's own val/test split, for the final figures
    flip_safe: bool | None = None  # does a mirrored image keep its class? None: judge by colour

    @classmethod
    def of(
        cls, name: str, images: torch.Tensor, labels: torch.Tensor, num_classes: int, **kw: Any
    ) -> ImageData:
        """A resident dataset from its tensors."""
        return cls(name, labels, num_classes, images.shape[1], images.shape[2], images=images, **kw)

    @property
    def streamed(self) -> bool:
        return self.images is None

    def __len__(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        """What the data is, so a cached supernet is reused only for the same data: a content hash
        when resident, the files' paths and sizes when streamed."""
        if not hasattr(self, "_fingerprint"):  # hashing 47 MB takes a moment: once per load
            digest = hashlib.sha1(self.source_id.encode() if self.streamed else self.images.numpy().tobytes())
            digest.update(self.labels.numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def split(self, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Stratified (train_indices, val_indices), reproducible from ``seed``."""
        generator = torch.Generator().manual_seed(seed)
        train, val = [], []
        for c in range(self.num_classes):
            idx = torch.nonzero(self.labels == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=generator)]
            n_val = round(len(idx) * val_fraction)
            val.append(idx[:n_val])
            train.append(idx[n_val:])
        return torch.cat(train).sort().values, torch.cat(val).sort().values

    def subset(self, indices: torch.Tensor) -> ImageData:
        """These images only, resident (decoded now if streamed): e.g. the validation split that
        every candidate is scored on."""
        indices = indices.cpu()
        if self.streamed:
            images = torch.cat([x for x, _ in self.batches(indices, 256)]) if len(indices) else None
        else:
            images = self.images[indices]
        images = (
            images
            if images is not None
            else torch.empty(0, self.in_channels, self.image_size, self.image_size)
        )
        return ImageData.of(self.name, images, self.labels[indices], self.num_classes, classes=self.classes)

    def to(self, device: torch.device | str) -> ImageData:
        """The resident images and labels on ``device`` (a streamed dataset stays as it is)."""
        if self.streamed:
            return self
        return replace(self, images=self.images.to(device), labels=self.labels.to(device), test=None)

    def batches(
        self,
        indices: torch.Tensor,
        batch_size: int,
        device: torch.device | str | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(uint8 images, labels)`` of ``indices`` in that order, ``batch_size`` at a time, on
        ``device``: slices of the resident tensors, or decoded by DataLoader workers."""
        if not self.streamed:
            stop = len(indices) - len(indices) % batch_size if drop_last else len(indices)
            for start in range(0, stop, batch_size):
                chosen = indices[start : start + batch_size].to(self.images.device)
                x, y = self.images[chosen], self.labels[chosen]
                yield (
                    (x, y)
                    if device is None
                    else (x.to(device, non_blocking=True), y.to(device, non_blocking=True))
                )
            return
        cuda = device is not None and torch.device(device).type == "cuda"
        loader = DataLoader(
            Subset(self.source, indices.cpu().tolist()),
            batch_size=batch_size,
            shuffle=False,
            drop_last=drop_last,
            num_workers=self.workers,
            pin_memory=cuda,
        )
        try:
            for x, y in loader:
                yield (
                    (x, y)
                    if device is None
                    else (x.to(device, non_blocking=True), y.to(device, non_blocking=True))
                )
        except DataError as e:  # from a worker, re-raised with the worker's traceback in its text
            last = [line for line in str(e).splitlines() if line.strip()][-1]
            raise DataError(last.split("DataError: ", 1)[-1]) from None


class Dataset(abc.ABC):
    """Base of the ``dataset`` conf group entries: ``load()`` returns ImageData. ``flip_safe``
    says whether a left-right mirrored image keeps its class (false for digits or text), for the
    recipes' ``flip: auto``; null leaves it to the images (RGB: flip, grayscale: no flip)."""

    name = ""

    def __init__(self, val_fraction: float = 0.1, flip_safe: bool | None = None) -> None:
        if not 0 < val_fraction < 1:
            raise DataError(f"dataset.val_fraction: expected a value in (0, 1), got {val_fraction!r}")
        if flip_safe is not None and not isinstance(flip_safe, bool):
            raise DataError(f"dataset.flip_safe: expected true, false or null, got {flip_safe!r}")
        self.val_fraction, self.flip_safe = val_fraction, flip_safe

    @abc.abstractmethod
    def load(self) -> ImageData:
        """The training data (its ``test``: the dataset's own held-out split, where it has one)."""


class Embedded(Dataset):
    """6,000 Fashion-MNIST training images (600 per class) shipped inside the package."""

    name = "fashion_mnist_6k"

    def load(self) -> ImageData:
        with np.load(EMBEDDED_FILE) as f:
            images = torch.from_numpy(f["images"]).unsqueeze(1)
            labels = torch.from_numpy(f["labels"].astype(np.int64))
        return ImageData.of(self.name, images, labels, num_classes=10, flip_safe=self.flip_safe)


class _Torchvision(Dataset):
    """A torchvision dataset read from ``root`` (``download`` fetches it when missing); its test
    split is loaded as ``test``. ``image_size`` / ``channels`` resize it and give it 1 or 3
    channels (e.g. Fashion-MNIST at 32x32 RGB, the input of the CIFAR-sized spaces)."""

    def __init__(
        self,
        root: str,
        download: bool = False,
        val_fraction: float = 0.1,
        image_size: int | None = None,
        channels: int | None = None,
        flip_safe: bool | None = None,
    ) -> None:
        super().__init__(val_fraction, flip_safe)
        if image_size is not None and image_size < 1:
            raise DataError(f"dataset.image_size: expected a value >= 1 or null, got {image_size!r}")
        if channels not in (None, 1, 3):
            raise DataError(f"dataset.channels: expected 1, 3 or null, got {channels!r}")
        self.root = Path(root).expanduser()
        self.download = download
        self.image_size, self.channels = image_size, channels

    @abc.abstractmethod
    def _open(self, root: Path, train: bool) -> ImageData:
        """One split of the dataset as ImageData."""

    def _missing(self) -> DataError:
        return DataError(
            f"dataset.root: {self.name} not found under '{self.root.resolve()}' and "
            f"dataset.download=false; point dataset.root at it or set dataset.download=true"
        )

    def load(self) -> ImageData:
        if not self.download and not self.root.is_dir():
            raise self._missing()
        try:
            data = self._shaped(self._open(self.root, train=True))
            data.test = self._shaped(self._open(self.root, train=False))
            data.flip_safe = self.flip_safe
            return data
        except RuntimeError as e:
            if "not found" in str(e).lower() or "corrupted" in str(e).lower():
                raise self._missing() from None
            raise _unreadable(self.name, self.root, e) from None
        except Exception as e:  # noqa: BLE001 - download failed (no network), truncated or foreign files
            raise _unreadable(self.name, self.root, e) from None

    def _shaped(self, data: ImageData) -> ImageData:
        """``data`` at the configured size and channels (as given where neither is set)."""
        images, name = data.images, data.name
        if self.image_size and self.image_size != data.image_size:
            size = (self.image_size, self.image_size)
            images = F.interpolate(images.float(), size=size, mode="bilinear", antialias=True)
            images = images.round_().clamp_(0, 255).to(torch.uint8)
            name += f"-{self.image_size}px"
        if self.channels and self.channels != data.in_channels:
            images = (
                images.expand(-1, 3, -1, -1).contiguous()
                if self.channels == 3
                else images.float().mean(1, keepdim=True).round().to(torch.uint8)
            )
            name += "-rgb" if self.channels == 3 else "-gray"
        return ImageData.of(name, images, data.labels, data.num_classes, classes=data.classes)


def _unreadable(name: str, root: Path, error: Exception) -> DataError:
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return DataError(f"dataset.root: could not load {name} from '{root.resolve()}': {first}")


class FashionMNIST(_Torchvision):
    name = "fashion_mnist"

    def _open(self, root: Path, train: bool) -> ImageData:
        try:
            ds = torchvision.datasets.FashionMNIST(root, train=train, download=self.download)
        except RuntimeError:
            # Only the published .gz files present (e.g. a read-only mirror): torchvision reads
            # extracted files, so extract them to a temporary folder and read from there.
            raw = root / "FashionMNIST" / "raw"
            gz = sorted(raw.glob("*-ubyte.gz"))
            if len(gz) != 4:
                raise
            with tempfile.TemporaryDirectory(prefix="nas-fashion-mnist-") as tmp:  # read, then gone
                out = Path(tmp) / "FashionMNIST" / "raw"
                out.mkdir(parents=True)
                for f in gz:
                    with gzip.open(f, "rb") as src, open(out / f.stem, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                ds = torchvision.datasets.FashionMNIST(tmp, train=train, download=False)
        return ImageData.of(
            self.name, ds.data.unsqueeze(1).clone(), ds.targets.long(), 10, classes=ds.classes
        )


class CIFAR10(_Torchvision):
    name = "cifar10"

    def _open(self, root: Path, train: bool) -> ImageData:
        ds = torchvision.datasets.CIFAR10(root, train=train, download=self.download)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW
        return ImageData.of(
            self.name, images, torch.tensor(ds.targets, dtype=torch.long), 10, classes=ds.classes
        )

"""Datasets behind the ``dataset`` conf group, loaded once into memory as uint8 tensors.

Every dataset becomes an ``ImageData`` (images (N, C, H, W) uint8, labels (N,) int64); the
validation split used to score candidates is held out of the training data with a seeded,
class-stratified split. The default, ``embedded``, ships with the package and needs no network.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nas.errors import UserError

EMBEDDED_FILE = Path(__file__).parent / "_data" / "fashion_mnist_6k.npz"


class DataError(UserError, ValueError):
    """The dataset cannot be loaded (the message names the key or path)."""


@dataclass
class ImageData:
    name: str
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    num_classes: int

    @property
    def in_channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[2]

    def fingerprint(self) -> str:
        """Content hash, so a cached supernet is reused only for the same data."""
        if not hasattr(self, "_fingerprint"):  # hashing 47 MB takes a moment: once per load
            digest = hashlib.sha1(self.images.numpy().tobytes())
            digest.update(self.labels.numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def split(self, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Stratified (train_indices, val_indices), reproducible from ``seed``."""
        if not 0 < val_fraction < 1:
            raise DataError(f"dataset.val_fraction must be in (0, 1), got {val_fraction}")
        generator = torch.Generator().manual_seed(seed)
        train, val = [], []
        for c in range(self.num_classes):
            idx = torch.nonzero(self.labels == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=generator)]
            n_val = round(len(idx) * val_fraction)
            val.append(idx[:n_val])
            train.append(idx[n_val:])
        return torch.cat(train).sort().values, torch.cat(val).sort().values


class Dataset:
    """Base of the ``dataset`` conf group entries: ``load()`` returns ImageData."""

    name = ""

    def __init__(self, val_fraction: float = 0.1) -> None:
        if not 0 < val_fraction < 1:
            raise DataError(f"dataset.val_fraction: expected a value in (0, 1), got {val_fraction!r}")
        self.val_fraction = val_fraction

    def load(self) -> ImageData:
        raise NotImplementedError  # pragma: no cover - abstract


class Embedded(Dataset):
    """6,000 Fashion-MNIST training images (600 per class) shipped inside the package."""

    name = "fashion_mnist_6k"

    def load(self) -> ImageData:
        with np.load(EMBEDDED_FILE) as f:
            images = torch.from_numpy(f["images"]).unsqueeze(1)
            labels = torch.from_numpy(f["labels"].astype(np.int64))
        return ImageData(self.name, images, labels, num_classes=10)


class _Torchvision(Dataset):
    """A torchvision dataset read from ``root`` (``download`` fetches it when missing)."""

    def __init__(
        self, root: str, download: bool = False, val_fraction: float = 0.1, train: bool = True
    ) -> None:
        super().__init__(val_fraction)
        self.root = Path(root).expanduser()
        self.download = download
        self.train = train  # the test split is for reporting only, never for search

    def _open(self, root: Path):
        raise NotImplementedError  # pragma: no cover - abstract

    def _missing(self) -> DataError:
        return DataError(
            f"dataset.root: {self.name} not found under '{self.root.resolve()}' and "
            f"dataset.download=false; point dataset.root at it or set dataset.download=true"
        )

    def load(self) -> ImageData:
        if not self.download and not self.root.is_dir():
            raise self._missing()
        try:
            return self._to_image_data(self._open(self.root))
        except RuntimeError as e:
            if "not found" in str(e).lower() or "corrupted" in str(e).lower():
                raise self._missing() from None
            raise _unreadable(self.name, self.root, e) from None
        except Exception as e:  # noqa: BLE001 - download failed (no network), truncated or foreign files
            raise _unreadable(self.name, self.root, e) from None

    def _to_image_data(self, ds) -> ImageData:
        raise NotImplementedError  # pragma: no cover - abstract


def _unreadable(name: str, root: Path, error: Exception) -> DataError:
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return DataError(f"dataset.root: could not load {name} from '{root.resolve()}': {first}")


class FashionMNIST(_Torchvision):
    name = "fashion_mnist"

    def _open(self, root: Path):
        import torchvision

        try:
            return torchvision.datasets.FashionMNIST(root, train=self.train, download=self.download)
        except RuntimeError:
            # Only the published .gz files present (e.g. a read-only mirror): torchvision reads
            # extracted files, so extract them next to our cache and read from there.
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
                return torchvision.datasets.FashionMNIST(tmp, train=self.train, download=False)

    def _to_image_data(self, ds) -> ImageData:
        return ImageData(self.name, ds.data.unsqueeze(1).clone(), ds.targets.long(), 10)


class CIFAR10(_Torchvision):
    name = "cifar10"

    def _open(self, root: Path):
        import torchvision

        return torchvision.datasets.CIFAR10(root, train=self.train, download=self.download)

    def _to_image_data(self, ds) -> ImageData:
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW
        return ImageData(self.name, images, torch.tensor(ds.targets, dtype=torch.long), 10)


class ImageFolder(Dataset):
    """``root/<class>/<image>`` files, resized to ``image_size`` (loaded into memory)."""

    name = "imagefolder"

    def __init__(
        self, root: str, image_size: int = 32, grayscale: bool = False, val_fraction: float = 0.1
    ) -> None:
        super().__init__(val_fraction)
        if image_size < 1:
            raise DataError(f"dataset.image_size: expected a value >= 1, got {image_size!r}")
        self.root = Path(root).expanduser()
        self.image_size = image_size
        self.grayscale = grayscale

    def load(self) -> ImageData:
        import torchvision
        from torchvision.transforms import v2

        if not self.root.is_dir():
            raise DataError(f"dataset.root: image folder '{self.root.resolve()}' does not exist")
        steps = [v2.Resize((self.image_size, self.image_size)), v2.PILToTensor()]
        if self.grayscale:
            steps.insert(0, v2.Grayscale())
        try:
            ds = torchvision.datasets.ImageFolder(self.root, transform=v2.Compose(steps))
        except FileNotFoundError as e:
            raise DataError(f"dataset.root: {e}") from None
        images = []
        for i, (path, _) in enumerate(ds.samples):
            try:
                images.append(ds[i][0])
            except Exception as e:  # noqa: BLE001 - a truncated or foreign file among the images
                raise DataError(f"dataset.root: cannot read image '{path}': {e}") from None
        images = torch.stack(images)
        labels = torch.tensor(ds.targets, dtype=torch.long)
        return ImageData(f"imagefolder:{self.root.name}", images, labels, len(ds.classes))

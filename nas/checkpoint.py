"""Checkpoints (trained supernets, partial trainings) written atomically and read as data only.

The cache folder may be shared between users, so whoever can write into it must not be able to
run code in the processes that read it: every checkpoint is loaded with ``weights_only=True``
(tensors, dicts, lists, tuples and plain values; no other object is ever built), and a file that
holds anything else, or is damaged, is a one-line UserError naming it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from infra.errors import UserError
from infra.files import atomic_path

REBUILD = "delete it and rerun to rebuild it"


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file: a reader never sees half a file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device | None = "cpu",
    keys: Iterable[str] = (),
    rebuild: str = REBUILD,
) -> Any:
    """The checkpoint at ``path`` loaded with ``weights_only=True``; with ``keys``, a dict that
    holds them. A file torch refuses (objects other than tensors and plain values), a truncated
    or garbage one, or one without ``keys`` is a UserError whose one line names the file and
    says what to do (``rebuild``)."""
    shown = str(path)
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the one line below only
            warnings.simplefilter("ignore")
            saved = torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise UserError(f"cannot read checkpoint {shown!r}: {e.strerror or e}") from None
    # UnpicklingError (a refused object, garbage), RuntimeError or OSError (torch's zip reader:
    # truncated), EOFError (empty), KeyError (text), ...: whatever the bytes, not a checkpoint.
    except Exception:  # noqa: BLE001
        raise UserError(
            f"{shown!r} is not a nas checkpoint (it holds objects other than tensors and plain "
            f"values, or is damaged); {rebuild}"
        ) from None
    missing = [k for k in keys if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise UserError(f"{shown!r} is not a nas checkpoint (it has no {', '.join(missing)}); {rebuild}")
    return saved

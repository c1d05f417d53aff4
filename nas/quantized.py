"""int8 deployment on the service's floor: the calibration images a quantizing profiler gets
(a seeded sample of the training split), the top-1 of the int8 model it measures, and the
parity check of an exported int8 model against its float model.

The profiler quantizes (latency_models.quantize); this module only hands it data and scores
what it built, so the figures of one trial describe one int8 model: the one timed, scored and
exported.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from latency_models.quantize import CalibrationImages, predict, quantization_of, session
from nas.data import ImageData
from nas.records import QuantizedAccuracy

SCORING_BATCH = 250  # images per ONNX Runtime call when scoring an int8 model
PARITY_IMAGES = 512  # validation images an exported int8 model is checked on
MIN_AGREEMENT = 0.98  # ... whose top-1 predictions must agree with the float model's on this share


def calibration_images(data: ImageData, train_idx: torch.Tensor, count: int, seed: int) -> CalibrationImages:
    """``count`` images of the training split (a seeded sample, in index order), as float32 in
    [0, 1]: what an int8 model is calibrated on."""
    chosen = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed))]
    chosen = chosen[:count].sort().values
    images = data.subset(chosen).images.float().div_(255).numpy()
    return CalibrationImages(images, f"{data.name} training split, {len(chosen)} images (seed {seed})")


def calibrate(profiler: Any, data: ImageData, train_idx: torch.Tensor, seed: int) -> None:
    """Give a quantizing profiler its calibration images (nothing for any other profiler)."""
    if quantization_of(profiler) is not None:
        profiler.calibrate_with(calibration_images(data, train_idx, profiler.calibration_images, seed))


def as_float(images: torch.Tensor) -> np.ndarray:
    """uint8 images (N, C, H, W) as the models take them: float32 in [0, 1]."""
    return images.float().div_(255).numpy()


def top1_of(
    onnx_bytes: bytes,
    images: torch.Tensor,
    labels: torch.Tensor,
    threads: int = 1,
    each_batch: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> float:
    """Top-1 (%) of an ONNX model on uint8 ``images``, in ONNX Runtime on CPU, SCORING_BATCH
    images at a time, each inside ``each_batch()``."""
    if not len(images):
        return 0.0
    run = session(onnx_bytes, threads)
    correct = 0
    for start in range(0, len(images), SCORING_BATCH):
        x = as_float(images[start : start + SCORING_BATCH])
        with each_batch():
            (logits,) = run.run(None, {"images": x})
        correct += int((logits.argmax(1) == labels[start : start + SCORING_BATCH].cpu().numpy()).sum())
    return 100.0 * correct / len(images)


def quantized_top1(
    profiler: Any,
    model: torch.nn.Module,
    input_shape: tuple[int, ...],
    images: torch.Tensor,
    labels: torch.Tensor,
    float_top1: float,
    each_batch: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    test: tuple[torch.Tensor, torch.Tensor, float | None] | None = None,
) -> QuantizedAccuracy:
    """The top-1 of the int8 model ``profiler`` measures for ``model`` (the same bytes: the
    profiler keeps its last quantized model) on uint8 ``images``, beside ``float_top1``; also
    on the test split where ``test`` (images, labels, float top-1) is given. Quantizing runs
    inside ``each_batch()``, as does every scoring batch; ONNX Runtime uses torch's threads."""
    start = time.perf_counter()
    with each_batch():
        quantized = profiler.quantized(model, input_shape)
    run = {"threads": max(1, torch.get_num_threads()), "each_batch": each_batch}
    test_top1 = top1_of(quantized.onnx, test[0], test[1], **run) if test is not None else None
    return QuantizedAccuracy(
        quantization=profiler.quantization(),
        top1=top1_of(quantized.onnx, images, labels, **run),
        float_top1=float_top1,
        images=len(images),
        calibration=quantized.calibration,
        seconds=round(time.perf_counter() - start, 4),
        test_top1=test_top1,
        float_test_top1=test[2] if test is not None else None,
    )


@dataclass(frozen=True)
class Parity:
    """How an int8 model's predictions compare with its float model's on ``images`` validation
    images: the share of equal top-1 predictions, the largest logit difference, both top-1s."""

    images: int
    agreement: float
    max_abs_logit_diff: float
    float_top1: float
    int8_top1: float

    @property
    def passed(self) -> bool:
        return self.agreement >= MIN_AGREEMENT

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "top1_agreement": round(self.agreement, 5),
            "min_agreement": MIN_AGREEMENT,
            "max_abs_logit_diff": round(self.max_abs_logit_diff, 6),
            "float_top1": round(self.float_top1, 3),
            "int8_top1": round(self.int8_top1, 3),
            "passed": self.passed,
        }


def parity(float_onnx: bytes, int8_onnx: bytes, images: torch.Tensor, labels: torch.Tensor) -> Parity:
    """The int8 model against the float one on the first PARITY_IMAGES of uint8 ``images``."""
    x, y = as_float(images[:PARITY_IMAGES]), labels[:PARITY_IMAGES].cpu().numpy()
    reference, got = predict(float_onnx, x), predict(int8_onnx, x)
    return Parity(
        images=len(x),
        agreement=float((reference.argmax(1) == got.argmax(1)).mean()),
        max_abs_logit_diff=float(np.abs(reference - got).max()),
        float_top1=100.0 * float((reference.argmax(1) == y).mean()),
        int8_top1=100.0 * float((got.argmax(1) == y).mean()),
    )


INT8_FILE = "model_int8.onnx"  # an export's int8 model, beside model.onnx
DEFAULT_CALIBRATION_IMAGES = 256  # the ONNX Runtime profiler's default


def export_calibration_count(info: dict[str, Any], profiler_node: Any) -> int:
    """How many calibration images an export's int8 model takes (0: no int8 model): the study's
    own profiler settings where it searched for int8, else the command's ``profiler`` where it
    asks for int8 (``profiler.quantize=int8``)."""
    stored = (info.get("profiler") or {}).get("settings") or {}
    for settings in (stored, dict(profiler_node or {})):
        if settings.get("quantize") == "int8":
            return int(settings.get("calibration_images") or DEFAULT_CALIBRATION_IMAGES)
    return 0


def study_split(
    cfg: Any, info: dict[str, Any], study_name: str
) -> tuple[ImageData, torch.Tensor, torch.Tensor]:
    """The study's data (``dataset`` of the command, which must be the study's) and its
    training and validation split, made as the search made it."""
    from infra.errors import UserError
    from nas.config import instantiate

    data = instantiate("dataset", cfg.dataset).load()
    if info.get("data_fingerprint") not in (None, data.fingerprint()):
        raise UserError(
            f"dataset: study {study_name!r} was searched on {info.get('dataset')!r}, not on {data.name!r}; "
            "give the dataset settings of its nas search (its int8 model is calibrated and checked on them)"
        )
    split = info.get("split") or {}
    train_idx, val_idx = data.split(
        val_fraction=split.get("val_fraction", 0.1), seed=split.get("seed", cfg.seed)
    )
    return data, train_idx, val_idx


def export_int8(
    float_onnx: bytes, split: tuple[ImageData, torch.Tensor, torch.Tensor], count: int, seed: int
) -> tuple[bytes, dict[str, Any], Parity]:
    """The int8 model of an export (calibrated as the search calibrated it: ``count`` images of
    the training split drawn with ``seed``), what goes into its manifest, and its parity check
    against the float model on validation images."""
    from latency_models.quantize import SCHEME, quantize_int8

    data, train_idx, val_idx = split
    quantized = quantize_int8(float_onnx, calibration_images(data, train_idx, count, seed))
    val = data.subset(val_idx[:PARITY_IMAGES])
    check = parity(float_onnx, quantized.onnx, val.images, val.labels)
    manifest = {
        "file": INT8_FILE,
        "scheme": SCHEME,
        "calibration": quantized.calibration,
        "parity": check.to_dict(),
    }
    return quantized.onnx, manifest, check

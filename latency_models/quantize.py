"""Post-training static int8 quantization with ONNX Runtime's tooling (QDQ, calibrated), and the
``Quantizing`` capability of a profiler that measures such a deployment.

The scheme (``SCHEME``, stored with every int8 figure, so a change of it keys figures apart):
QDQ format (QuantizeLinear/DequantizeLinear pairs that ORT's CPU kernels fuse into integer
ops), the weights of Conv, MatMul and Gemm in int8, symmetric and per output channel, their
input activations in uint8 per tensor (asymmetric, MinMax over the calibration images), which
is ONNX Runtime's advice for x86 CPUs with VNNI. LayerNorm, Softmax, GELU and the residual adds
stay float (they quantize worse than convs and linear layers and gain little), and so does the
classifier head: on the tiny space's members it moved 1.9 % of the top-1 predictions (median)
in int8 against 0.7 % with the head in float, for a negligible share of the time.

Calibration: a ``CalibrationDataReader`` feeds ``CalibrationImages`` (a few hundred images of
the user's training split, as the model takes them: float32 in [0, 1]) in batches of 32. A
profiler gets them through ``calibrate_with``; a profiler that has none (``nas profile``, a
predictor's blocks) calibrates on seeded uniform noise of the input's shape: the time of an
int8 model does not depend on its scales, only its accuracy does, and that is only ever
measured on a model calibrated on real images (``QuantizedModel.calibration`` says which).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

QUANTIZE_CHOICES = ("none", "int8")
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
SCHEME = {
    "format": "QDQ",
    "weights": "int8 symmetric per-channel",
    "activations": "uint8 per-tensor minmax",
    "ops": list(QUANTIZED_OPS),
    "float": "classifier head, normalisation, softmax, activations, residual adds",
}
CALIBRATION_BATCH = 32
NOISE = "uniform noise (no calibration images given)"
# Ops a classifier head's output passes through on its way to the graph output.
_PASS_THROUGH = {"Add", "Flatten", "Reshape", "Squeeze", "Identity", "Cast", "Mul", "Div"}


@dataclass(frozen=True, eq=False)
class CalibrationImages:
    """Images an int8 model is calibrated on: float32 ``(N, C, H, W)`` in [0, 1], as the model
    takes them, and ``source``, what they are (dataset, split, count), for the records."""

    images: np.ndarray
    source: str

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.float32 or len(self.images) == 0:
            raise ValueError(
                f"calibration images: expected float32 (N, C, H, W) with N > 0, got "
                f"{self.images.dtype} {self.images.shape}"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    @classmethod
    def noise(cls, input_shape: tuple[int, ...], count: int, seed: int = 0) -> CalibrationImages:
        """Seeded uniform noise in [0, 1] of ``input_shape``: enough to time an int8 model."""
        images = np.random.default_rng(seed).random((count, *input_shape), dtype=np.float32)
        return cls(images, NOISE)


@dataclass(frozen=True)
class QuantizedModel:
    """An int8 ONNX model (bytes), what it was calibrated on and what quantizing it cost."""

    onnx: bytes
    calibration: str
    seconds: float

    @property
    def calibrated_on_images(self) -> bool:
        return self.calibration != NOISE


class _Reader:
    """ONNX Runtime's CalibrationDataReader over ``images``, in batches."""

    def __init__(self, images: np.ndarray, batch: int) -> None:
        self.images, self.batch, self.start = images, batch, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.start >= len(self.images):
            return None
        chunk = self.images[self.start : self.start + self.batch]
        self.start += self.batch
        return {"images": chunk}

    def rewind(self) -> None:
        self.start = 0


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantization tooling logs advice through the root logger (which would
    also install a handler on it) and numpy warns on constant tensors: none of it for users."""
    root = logging.getLogger()
    null = logging.NullHandler()
    added = not root.handlers
    if added:
        root.addHandler(null)  # logging.warning() then installs no stderr handler of its own
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
        if added:
            root.removeHandler(null)


def head_nodes(model: Any) -> list[str]:
    """Names of the Conv/MatMul/Gemm nodes whose result reaches the graph output through
    pass-through ops only (the classifier head, kept float)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    found: list[str] = []
    frontier = [o.name for o in model.graph.output]
    for _ in range(8):  # a few pass-through ops at most between the head and the output
        nxt = []
        for name in frontier:
            node = producers.get(name)
            if node is None:
                continue
            if node.op_type in QUANTIZED_OPS:
                found.append(node.name)
            elif node.op_type in _PASS_THROUGH:
                nxt += [i for i in node.input if i in producers]
        frontier = nxt
    return found


def quantize_int8(
    onnx_bytes: bytes, calibration: CalibrationImages, float_head: bool = True
) -> QuantizedModel:
    """``onnx_bytes`` (a float model: input ``images``, output ``logits``) statically quantized
    to int8 by ``SCHEME``, calibrated on ``calibration`` (``float_head=False``: the classifier
    head in int8 too, for benchmarks.int8_head only)."""
    import onnx
    from onnxruntime import quantization as q

    start = time.perf_counter()
    model = onnx.load_from_string(onnx_bytes)
    with tempfile.TemporaryDirectory(prefix="nas-int8-") as folder, _quiet():
        source, target = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
        source.write_bytes(onnx_bytes)
        q.quantize_static(
            str(source),
            str(target),
            _Reader(calibration.images, CALIBRATION_BATCH),
            quant_format=q.QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_exclude=head_nodes(model) if float_head else [],
            per_channel=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=q.CalibrationMethod.MinMax,
        )
        quantized = target.read_bytes()
    return QuantizedModel(quantized, calibration.source, round(time.perf_counter() - start, 4))


def session(onnx_bytes: bytes, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session for computing predictions (not timing): ``threads`` intra-op
    threads that sleep when idle, so they never spin beside a measurement."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def predict(
    onnx_bytes: bytes,
    images: np.ndarray,
    batch_size: int = 256,
    threads: int = 1,
    each_batch: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> np.ndarray:
    """Logits of the ONNX model on float32 ``images`` in [0, 1]; each batch runs inside
    ``each_batch()`` (e.g. the shared measurement lock)."""
    run = session(onnx_bytes, threads)
    out = []
    for start in range(0, len(images), batch_size):
        with each_batch():
            (logits,) = run.run(None, {"images": images[start : start + batch_size]})
        out.append(logits)
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


@runtime_checkable
class Quantizing(Protocol):
    """A profiler that can measure a quantized deployment of each candidate (ONNX Runtime's
    ``quantize=int8``). ``quantization()`` names it (None: the float model is measured).
    ``calibration_images``: how many images it wants, given through ``calibrate_with``
    (before measuring; images of the training split). ``quantized(model, input_shape)``: the
    int8 model it measures for ``model``, for the caller to score the same bytes."""

    calibration_images: int

    def quantization(self) -> str | None: ...

    def calibrate_with(self, calibration: CalibrationImages) -> None: ...

    def quantized(self, model: Any, input_shape: tuple[int, ...]) -> QuantizedModel: ...


def quantization_of(profiler: Any) -> str | None:
    """What deployment ``profiler`` measures: ``int8``, or None for the float model."""
    return profiler.quantization() if isinstance(profiler, Quantizing) else None

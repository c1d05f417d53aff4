"""ONNX export of a static network: one function, so what is measured is what is shipped."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch

OPSET = 18


def to_onnx(model: torch.nn.Module, input_shape: tuple[int, ...], path: Path | None = None) -> bytes:
    """Export with a dynamic batch axis (input ``images``, output ``logits``).

    Uses the TorchScript exporter (``dynamo=False``): about 10x faster than the dynamo exporter
    for these small graphs, which matters when every trial exports. Returns the model bytes and
    writes them to ``path`` when given.
    """
    buffer = io.BytesIO()
    example = torch.rand(1, *input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval().cpu(),
            (example,),
            buffer,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data

"""int8 deployment in the ONNX Runtime profiler (latency_models.quantize): real quantization with
ONNX Runtime's tooling, real sessions, on members of the tiny space."""

import logging

import numpy as np
import onnx
import pytest
import torch

from latency_models import create_profiler, profiler_key
from latency_models.onnx_io import to_onnx
from latency_models.quantize import (
    NOISE,
    SCHEME,
    CalibrationImages,
    Quantizing,
    head_nodes,
    predict,
    quantization_of,
    quantize_int8,
)
from search_spaces.networks import build_model

FAST = {"warmup": 2, "runs": 10}


def test_int8_settings_key_figures_apart_and_float_keys_stay_as_they_were():
    float_profiler = create_profiler("onnxruntime", **FAST)
    int8 = create_profiler("onnxruntime", quantize="int8", **FAST)
    assert quantization_of(float_profiler) is None and quantization_of(int8) == "int8"
    assert isinstance(int8, Quantizing)
    # The float settings hold no quantization key at all: every earlier float figure keeps its key.
    assert not {"quantize", "calibration_images", "scheme"} & set(float_profiler.settings())
    assert int8.settings()["quantize"] == "int8" and int8.settings()["scheme"] == SCHEME
    assert profiler_key(float_profiler) != profiler_key(int8)
    fewer = create_profiler("onnxruntime", quantize="int8", calibration_images=64, **FAST)
    assert profiler_key(fewer) != profiler_key(int8)  # another calibration: another figure
    assert quantization_of(create_profiler("flops")) is None  # a proxy measures no deployment


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"quantize": "int4"}, "profiler.quantize"),
        ({"quantize": "int8", "calibration_images": 0}, "profiler.calibration_images"),
    ],
)
def test_bad_quantization_settings_are_refused(settings, words):
    with pytest.raises(ValueError, match=words):
        create_profiler("onnxruntime", **settings)


def test_quantized_model_keeps_the_head_float_and_predicts_as_the_float_one(tiny_space):
    torch.manual_seed(0)
    arch = tiny_space.largest()
    model = build_model(arch).eval()
    float_onnx = to_onnx(model, arch.input_shape)
    images = np.random.default_rng(1).random((256, *arch.input_shape), dtype=np.float32)
    handlers = list(logging.getLogger().handlers)
    quantized = quantize_int8(float_onnx, CalibrationImages(images, "noise for a test"))
    assert logging.getLogger().handlers == handlers  # the tooling's advice installed no handler

    graph = onnx.load_from_string(quantized.onnx).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    (head,) = head_nodes(onnx.load_from_string(float_onnx))
    producers = {out: n.op_type for n in graph.node for out in n.output}
    (gemm,) = [n for n in graph.node if n.name == head]
    assert all(producers.get(i) != "DequantizeLinear" for i in gemm.input)  # the head stays float

    reference, got = predict(float_onnx, images), predict(quantized.onnx, images)
    assert got.shape == reference.shape and np.isfinite(got).all()
    scale = np.abs(reference).max()
    assert np.abs(got - reference).max() < 0.1 * scale  # int8 noise, not another function


def test_profiler_measures_and_hands_out_the_same_int8_model(tiny_space):
    profiler = create_profiler("onnxruntime", quantize="int8", calibration_images=32, **FAST)
    arch = tiny_space.smallest()
    model = build_model(arch).eval()
    uncalibrated = profiler.quantized(model, arch.input_shape)
    assert uncalibrated.calibration == NOISE and not uncalibrated.calibrated_on_images

    images = np.random.default_rng(0).random((100, *arch.input_shape), dtype=np.float32)
    profiler.calibrate_with(CalibrationImages(images, "test images"))
    first = profiler.quantized(model, arch.input_shape)
    assert first.calibrated_on_images and first.calibration == "test images"
    assert profiler.quantized(model, arch.input_shape) is first  # quantized once per model
    result = profiler.measure(arch, model)  # timed as the int8 model, same discipline
    assert result.unit == "ms" and result.median > 0 and result.n_runs >= 10
    assert profiler.quantized(model, arch.input_shape) is first

    with pytest.raises(ValueError, match="float32"):
        CalibrationImages(images.astype(np.float64), "wrong type")

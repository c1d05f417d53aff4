"""Activations: top-k activation sparsity is exact, exports, and is measured per trial."""

import dataclasses
import random

import numpy as np
import pytest
import torch

from latency_models.onnx_io import to_onnx
from latency_models.onnxruntime import OnnxRuntimeProfiler
from nas.supernet_training import activation_sparsity
from search_spaces.ops import TopKReLU
from search_spaces.supernet import VitSupernet
from search_spaces.vit import VitSpace
from tests.conftest import VIT


def test_topk_relu_keeps_k_per_token():
    x = torch.randn(2, 5, 40)
    out = TopKReLU(0.1, 40)(x)
    assert ((out != 0).sum(-1) <= 4).all()
    kept = out != 0
    assert torch.equal(out[kept], x[kept])  # kept values pass unchanged
    positive_top4 = (x >= x.topk(4, dim=-1).values[..., -1:]) & (x > 0)
    assert torch.equal(kept, positive_top4)


@pytest.fixture(scope="module")
def space():
    return VitSpace(**(VIT | {"activation": ["topk10", "topk25", "relu", "gelu"]}))


@pytest.mark.parametrize(
    "activation, low, high",
    [("topk10", 0.88, 1.0), ("topk25", 0.7, 0.8), ("relu", 0.2, 0.8), ("gelu", 0.0, 0.01)],
)
def test_measured_activation_sparsity(space, activation, low, high):
    torch.manual_seed(0)
    net = VitSupernet.from_space(space).eval()
    arch = dataclasses.replace(space.sample(random.Random(1)), activation=activation)
    model = net.extract(arch)
    images = (torch.rand(64, 1, 28, 28) * 255).to(torch.uint8)
    assert low <= activation_sparsity(model, images) <= high
    x = images.float() / 255
    with torch.no_grad():
        torch.testing.assert_close(net(x, arch), model(x), rtol=0, atol=1e-5)
        expected = model(x).numpy()
    (got,) = OnnxRuntimeProfiler().session(to_onnx(model, arch.input_shape)).run(None, {"images": x.numpy()})
    assert np.abs(got - expected).max() < 1e-4

import random

import numpy as np
import onnx
import torch

from latency_models.onnx_io import to_onnx
from latency_models.onnxruntime import OnnxRuntimeProfiler
from search_spaces.supernet import VitSupernet


def test_onnx_runtime_matches_torch_for_random_members(vit_space, tmp_path):
    torch.manual_seed(0)
    supernet = VitSupernet.from_space(vit_space)
    rng = random.Random(1)
    members = [vit_space.largest(), vit_space.smallest()] + [vit_space.sample(rng) for _ in range(6)]
    kinds = {layer.attention for arch in members for layer in arch.layers}
    assert kinds == {"softmax", "linear"}
    images = torch.rand(5, 1, 28, 28)
    for i, arch in enumerate(members):
        model = supernet.extract(arch)
        path = tmp_path / f"m{i}.onnx"
        to_onnx(model, arch.input_shape, path)
        onnx.checker.check_model(str(path), full_check=True)
        session = OnnxRuntimeProfiler().session(path.read_bytes())
        (got,) = session.run(None, {"images": images.numpy()})  # batch 5: dynamic axis works
        with torch.no_grad():
            expected = model(images).numpy()
        assert np.abs(got - expected).max() < 1e-4

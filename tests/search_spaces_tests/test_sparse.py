"""SparseLinear patterns: masks are what they claim, extraction is exact, training sees them."""

import dataclasses
import random

import numpy as np
import pytest
import torch

from latency_models.onnx_io import to_onnx
from latency_models.onnxruntime import OnnxRuntimeProfiler
from search_spaces.arch import PATTERNS, ArchError, LayerConfig
from search_spaces.sparse import apply_mask, mask_for, sparsify_pair
from search_spaces.supernet import VitSupernet
from search_spaces.vit import SpaceError, VitSpace
from tests.conftest import VIT

SPARSE_VIT = VIT | {"mlp_pattern": list(PATTERNS), "mlp_sparsity": [0.5, 0.75, 0.9], "depth": [1, 3]}


@pytest.fixture(scope="module")
def space():
    return VitSpace(**SPARSE_VIT)


@pytest.fixture(scope="module")
def supernet(space):
    torch.manual_seed(0)
    return VitSupernet.from_space(space).eval()


@pytest.mark.parametrize("pattern, n, m", [("2:4", 2, 4), ("4:8", 4, 8)])
def test_n_m_keeps_exactly_n_of_every_m(pattern, n, m):
    weight = torch.randn(32, 64)
    mask = mask_for(weight, pattern, 1 - n / m)
    groups = mask.view(32, 64 // m, m)
    assert (groups.sum(-1) == n).all()
    # The kept ones are the largest in their group.
    magnitude = weight.abs().view(32, 64 // m, m)
    assert (
        magnitude[groups].view(32, -1, n).min(-1).values
        >= magnitude[~groups].view(32, -1, m - n).max(-1).values
    ).all()


@pytest.mark.parametrize("level", [0.5, 0.75, 0.9])
def test_unstructured_and_block_levels(level):
    weight = torch.randn(48, 96)
    unstructured = mask_for(weight, "unstructured", level)
    assert unstructured.sum() == round(weight.numel() * (1 - level))
    assert weight.abs()[unstructured].min() >= weight.abs()[~unstructured].max()
    block = mask_for(weight, "block", level)
    blocks = block.view(12, 4, 24, 4).permute(0, 2, 1, 3).reshape(12 * 24, 16)
    assert ((blocks.sum(-1) == 0) | (blocks.sum(-1) == 16)).all()  # whole 4x4 blocks
    assert (blocks.sum(-1) == 16).sum() == round(12 * 24 * (1 - level))


def test_structured_removes_whole_units_by_importance():
    torch.manual_seed(0)
    fc1_w, fc1_b, fc2_w = torch.randn(64, 16), torch.randn(64), torch.randn(16, 64)
    fc1_w[7] *= 10  # clearly the most important unit
    w1, b1, w2 = sparsify_pair(fc1_w, fc1_b, fc2_w, "structured", 0.75)
    assert w1.shape == (16, 16) and b1.shape == (16,) and w2.shape == (16, 16)
    assert any(torch.equal(row, fc1_w[7]) for row in w1)


def test_extraction_is_exact_and_structured_is_physically_smaller(space, supernet):
    images = torch.rand(3, 1, 28, 28)
    rng = random.Random(0)
    seen = set()
    for _ in range(40):
        arch = space.sample(rng)
        model = supernet.extract(arch)
        with torch.no_grad():
            torch.testing.assert_close(supernet(images, arch), model(images), rtol=0, atol=1e-5)
        for layer, block in zip(arch.layers, model.blocks):
            seen.add(layer.mlp_pattern)
            fc1 = block.mlp.fc1.weight
            hidden = arch.mlp_hidden(layer)
            if layer.mlp_pattern == "structured":
                assert fc1.shape[0] == round(hidden * (1 - layer.mlp_sparsity)) < hidden
            else:
                assert fc1.shape[0] == hidden
                zeros = (fc1 == 0).float().mean().item()
                assert zeros == pytest.approx(layer.mlp_sparsity, abs=0.02)
    assert seen == set(PATTERNS)


def test_sparse_members_export_to_onnx(space, supernet):
    rng = random.Random(5)
    images = torch.rand(2, 1, 28, 28)
    for _ in range(4):
        arch = space.sample(rng)
        model = supernet.extract(arch)
        session = OnnxRuntimeProfiler().session(to_onnx(model, arch.input_shape))
        (got,) = session.run(None, {"images": images.numpy()})
        with torch.no_grad():
            assert np.abs(got - model(images).numpy()).max() < 1e-4


def test_straight_through_gradients_reach_pruned_weights():
    weight = torch.randn(8, 16, requires_grad=True)
    masked = apply_mask(weight, "unstructured", 0.75)
    masked.sum().backward()
    assert torch.equal(weight.grad, torch.ones_like(weight))  # STE: pruned weights get gradient too
    weight.grad = None
    masked = apply_mask(weight, "2:4", 0.5)
    masked.sum().backward()
    pruned = masked.detach() == 0
    # SR-STE: pruned weights additionally decay towards zero.
    assert torch.allclose(weight.grad[pruned], 1 + 2e-4 * weight.detach()[pruned])


def test_impossible_sparsity_is_rejected():
    with pytest.raises(ArchError, match="implies"):
        LayerConfig(1, 1.0, "softmax", mlp_pattern="2:4", mlp_sparsity=0.75)
    with pytest.raises(ArchError, match="mlp_sparsity"):
        LayerConfig(1, 1.0, "softmax", mlp_pattern="unstructured", mlp_sparsity=0.0)
    with pytest.raises(SpaceError, match=r"space\.mlp_pattern"):
        VitSpace(**(VIT | {"embed_dim": [36], "mlp_pattern": ["4:8"]}))
    with pytest.raises(SpaceError, match=r"space\.mlp_pattern"):
        VitSpace(**(VIT | {"mlp_pattern": ["3:4"]}))


def test_levels_are_only_asked_for_patterns_that_leave_them_free(space, tmp_path):
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        arch = space.suggest(trial)
        for i, layer in enumerate(arch.layers):
            asked = f"layer{i}.mlp_sparsity" in trial.params
            assert asked == (layer.mlp_pattern in ("unstructured", "block", "structured"))
        assert space.from_params(trial.params) == arch
        study.tell(trial, 0.0)
    assert dataclasses.replace(space.smallest().layers[0]).mlp_pattern == "structured"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="2:4 semi-structured kernels need CUDA")
def test_semi_structured_extraction_on_cuda(space, supernet):
    from torch.sparse import SparseSemiStructuredTensor

    arch = space.largest()
    arch = dataclasses.replace(
        arch,
        layers=tuple(
            dataclasses.replace(layer, mlp_pattern="2:4", mlp_sparsity=0.5) for layer in arch.layers
        ),
    )
    dense = supernet.extract(arch).cuda().to(torch.bfloat16)
    fast = supernet.extract(arch, semi_structured=True)
    assert isinstance(fast.blocks[0].mlp.fc1.weight, SparseSemiStructuredTensor)
    x = torch.rand(64, 1, 28, 28, device="cuda", dtype=torch.bfloat16)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), dense(x), rtol=0.05, atol=0.05)


def test_semi_structured_needs_cuda(space, supernet):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="CUDA"):
        supernet.extract(space.largest(), semi_structured=True)

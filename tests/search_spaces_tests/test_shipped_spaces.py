"""Every shipped space fits data at 28, 32, 64 and 224 px, gray or RGB, unchanged: it builds,
its supernet trains a step, and its members extract to plain PyTorch that ONNX Runtime agrees with."""

import random

import pytest
import torch

from nas.config import compose, group_options, instantiate
from tests.conftest import assert_extracts_and_exports

SHIPPED = group_options("space")
SIZES = [(28, 1), (32, 3), (64, 3)]


def _space(name: str, size: int, channels: int):
    node = compose([f"+space={name}"]).space
    return instantiate("space", node, image_size=size, in_channels=channels, num_classes=10)


@pytest.mark.parametrize("size, channels", SIZES, ids=[f"{s}px-{c}ch" for s, c in SIZES])
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_trains_a_step_and_exports(name, size, channels):
    assert {"vit", "hybrid", "tiny", "vit_gpu", "hybrid_gpu"} <= set(SHIPPED)
    space = _space(name, size, channels)
    torch.manual_seed(0)
    supernet = space.make_supernet()
    images = torch.rand(4, channels, size, size)
    labels = torch.randint(0, 10, (4,))
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.01)
    members = [space.largest(), space.smallest(), space.sample(random.Random(0))]
    for arch in members:
        assert arch.input_shape == (channels, size, size)
        torch.nn.functional.cross_entropy(supernet(images, arch), labels).backward()
    optimizer.step()
    for arch in members[::2]:  # the largest and a random member
        assert_extracts_and_exports(supernet, arch, images[:2])


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_builds_at_224_px(name):
    space = _space(name, 224, 3)
    supernet = space.make_supernet()
    with torch.no_grad():
        for arch in (space.largest(), space.smallest()):
            assert supernet(torch.rand(1, 3, 224, 224), arch).shape == (1, 10)


def test_patch_sizes_follow_the_image_size():
    assert _space("vit", 28, 1).patch_size == [7, 4]
    assert _space("vit", 32, 3).patch_size == [8, 4]
    assert _space("vit", 224, 3).patch_size == [32, 16]
    axes = _space("vit", 32, 3).axes()["patch_size"]
    assert "[8, 4]" in axes and "of [32, 16, 8, 7, 4] at 32 px" in axes

import random

import pytest
import torch

from search_spaces.supernet import VitSupernet


@pytest.fixture
def supernet(vit_space):
    torch.manual_seed(0)
    net = VitSupernet.from_space(vit_space)
    # Non-trivial normalisation and biases so that slicing mistakes show.
    net.set_normalization(torch.tensor([0.3]), torch.tensor([0.4]))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def test_extracted_subnet_equals_supernet_for_random_members(vit_space, supernet):
    rng = random.Random(0)
    images = torch.rand(4, 1, 28, 28)
    members = [vit_space.largest(), vit_space.smallest()] + [vit_space.sample(rng) for _ in range(25)]
    for arch in members:
        model = supernet.extract(arch)
        assert not any(isinstance(m, VitSupernet) for m in model.modules())
        with torch.no_grad():
            expected, got = supernet(images, arch), model(images)
        assert got.shape == (4, 10)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_extraction_copies_weights_and_slices_the_shared_ones(vit_space, supernet):
    arch = vit_space.smallest()
    model = supernet.extract(arch)
    qkv_big = supernet.body.blocks[0].attn.qkv.weight  # (3 * max_heads * hd, max_dim)
    qkv = model.blocks[0].attn.qkv.weight  # (3 * 1 * hd, dim)
    hd, dim, max_width = arch.head_dim, arch.embed_dim, supernet.max_heads * arch.head_dim
    for i in range(3):  # q, k and v each keep their first head
        torch.testing.assert_close(
            qkv[i * hd : (i + 1) * hd], qkv_big[i * max_width : i * max_width + hd, :dim]
        )
    assert qkv.data_ptr() != qkv_big.data_ptr()  # a copy, not a view
    with torch.no_grad():
        qkv.add_(1.0)
    assert not torch.equal(supernet.extract(arch).blocks[0].attn.qkv.weight, qkv)


def test_members_share_weights_and_gradients_reach_them(vit_space, supernet):
    supernet.train()
    arch = vit_space.smallest()
    loss = supernet(torch.rand(2, 1, 28, 28), arch).sum()
    loss.backward()
    grad = supernet.body.blocks[0].mlp.fc1.weight.grad
    hidden = arch.mlp_hidden(arch.layers[0])
    assert grad[:hidden, : arch.embed_dim].abs().sum() > 0
    assert grad[hidden:].abs().sum() == 0 and grad[:, arch.embed_dim :].abs().sum() == 0
    assert supernet.body.blocks[1].mlp.fc1.weight.grad is None  # depth 1: later blocks unused


def test_rejects_non_members(vit_space, supernet):
    import dataclasses

    too_deep = dataclasses.replace(vit_space.largest(), layers=vit_space.largest().layers * 2)
    with pytest.raises(ValueError, match="not a member"):
        supernet(torch.rand(1, 1, 28, 28), too_deep)
    other_patch = dataclasses.replace(vit_space.smallest(), patch_size=14)
    with pytest.raises(ValueError, match="patch_size"):
        supernet.extract(other_patch)

"""Every attention variant: supernet vs extracted module, ONNX parity, structure."""

import dataclasses
import random

import pytest
import torch

from search_spaces.arch import ATTENTIONS
from search_spaces.ops import TOKEN_MIXERS, Attention, Pooling, local_mask, token_mixer
from search_spaces.supernet import VitSupernet
from search_spaces.vit import VitSpace
from tests.conftest import VIT, assert_extracts_and_exports


@pytest.fixture(scope="module")
def space():
    return VitSpace(**(VIT | {"attention": list(ATTENTIONS), "depth": [1, 3]}))


@pytest.fixture(scope="module")
def supernet(space):
    torch.manual_seed(0)
    net = VitSupernet.from_space(space)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def with_attention(arch, kind):
    return dataclasses.replace(
        arch, layers=tuple(dataclasses.replace(layer, attention=kind) for layer in arch.layers)
    )


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_variant_extracts_exactly_and_exports(space, supernet, kind):
    images = torch.rand(3, 1, 28, 28)
    rng = random.Random(ATTENTIONS.index(kind))
    for arch in [with_attention(space.largest(), kind)] + [
        with_attention(space.sample(rng), kind) for _ in range(3)
    ]:
        assert_extracts_and_exports(supernet, arch, images)


def test_kv_heads_of_grouped_and_multi_query_attention():
    gqa, mqa = token_mixer("gqa", 64, 4, 16, 7), token_mixer("mqa", 64, 4, 16, 7)
    assert (gqa.num_heads, gqa.num_kv_heads) == (4, 2) and (mqa.num_heads, mqa.num_kv_heads) == (4, 1)
    assert gqa.qkv.out_features == (4 + 2 * 2) * 16 and mqa.qkv.out_features == (4 + 2) * 16
    # With identical K/V heads, GQA equals multi-head attention on repeated heads.
    x = torch.rand(2, 49, 64)
    assert gqa(x).shape == (2, 49, 64)


def test_sparse_query_attention_has_fewer_query_heads_than_kv_heads():
    sqa = token_mixer("sqa", 64, 4, 16, 7)
    assert (sqa.num_heads, sqa.num_kv_heads) == (2, 4)
    assert sqa.qkv.out_features == (2 + 2 * 4) * 16 and sqa.proj.in_features == 4 * 16
    # Equivalent to softmax attention whose query heads come in identical pairs.
    mha = Attention(64, 4, 16, 7)
    with torch.no_grad():
        q_weight, kv_weight = sqa.qkv.weight.split([32, 128])
        q_bias, kv_bias = sqa.qkv.bias.split([32, 128])
        pairs = q_weight.view(2, 1, 16, 64).expand(2, 2, 16, 64).reshape(64, 64)  # heads 0,0,1,1
        mha.qkv.weight.copy_(torch.cat([pairs, kv_weight]))
        mha.qkv.bias.copy_(torch.cat([q_bias.view(2, 1, 16).expand(2, 2, 16).reshape(64), kv_bias]))
        mha.proj.load_state_dict(sqa.proj.state_dict())
        x = torch.rand(2, 49, 64)
        torch.testing.assert_close(sqa(x), mha(x))


def test_every_attention_kind_but_none_has_a_registered_mixer_sharing_the_layout():
    assert set(TOKEN_MIXERS) == set(ATTENTIONS) - {"none"}
    for kind in set(ATTENTIONS) - {"none", "pool"}:
        mixer = token_mixer(kind, 64, 4, 16, 7)
        assert isinstance(mixer, Attention)  # qkv/proj layout: what the supernet slices
        assert mixer(torch.rand(2, 49, 64)).shape == (2, 49, 64)
    with pytest.raises(ValueError, match="unknown token mixer 'magic'"):
        token_mixer("magic", 64, 4, 16, 7)


def test_local_mask_is_a_3x3_neighbourhood():
    mask = local_mask(4, 1)
    assert mask.shape == (16, 16) and mask.diagonal().all()
    assert mask[0].nonzero().flatten().tolist() == [0, 1, 4, 5]  # corner: itself and 3 neighbours
    assert mask[5].sum() == 9  # interior: full 3x3


def test_none_skips_the_mixer_and_pool_has_no_weights(space):
    from search_spaces.networks import build_model

    none = build_model(with_attention(space.smallest(), "none"))
    assert not any("attn" in n or "norm1" in n for n, _ in none.named_parameters())
    pool = build_model(with_attention(space.smallest(), "pool"))
    assert isinstance(pool.blocks[0].attn, Pooling)
    assert not any(".attn." in n for n, _ in pool.named_parameters())
    # Pooling of a constant grid changes nothing (avg of equal values minus itself).
    assert Pooling(7)(torch.ones(1, 49, 8)).abs().max() == 0


def test_slab_adds_a_depthwise_conv_to_linear_attention(space, supernet):
    arch = with_attention(space.largest(), "slab")
    model = supernet.extract(arch)
    dwc = model.blocks[0].attn.dwc
    assert dwc.groups == dwc.in_channels == arch.layers[0].num_heads * arch.head_dim
    linear = supernet.extract(with_attention(space.largest(), "linear"))
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert not torch.allclose(model(x), linear(x))  # the conv contributes

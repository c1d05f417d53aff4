"""Static networks are found by the architecture's family, never by its class."""

import pytest
import torch

from search_spaces.arch import FAMILIES
from search_spaces.networks import NETWORKS, HybridNet, VisionTransformer, build_model, register_network


def test_every_family_has_one_registered_network(tiny_space, hybrid_space):
    assert set(NETWORKS) == set(FAMILIES)
    assert type(build_model(tiny_space.smallest())) is VisionTransformer
    assert type(build_model(hybrid_space.smallest())) is HybridNet


def test_a_network_registers_only_for_a_known_family():
    with pytest.raises(ValueError, match="no architecture family 'cnn'"):
        register_network("cnn")


def test_build_model_initialises_weights(tiny_space):
    torch.manual_seed(0)
    model = build_model(tiny_space.largest())
    assert all(not p.any() for n, p in model.named_parameters() if n.endswith("bias") and "norm" not in n)
    assert model.pos_embed.std() > 0

import dataclasses
import json

import pytest

from search_spaces.arch import FAMILIES, ArchConfig, ArchError, HybridArchConfig, LayerConfig, arch_from_dict


def make(**overrides) -> ArchConfig:
    fields = dict(
        image_size=28,
        in_channels=1,
        num_classes=10,
        patch_size=7,
        embed_dim=32,
        head_dim=8,
        activation="gelu",
        layers=(LayerConfig(2, 2.0, "softmax"), LayerConfig(1, 1.0, "linear")),
        space="test",
    )
    return ArchConfig(**(fields | overrides))


def test_json_and_yaml_round_trip_preserve_equality_and_key():
    arch = make()
    assert ArchConfig.from_json(arch.to_json()) == arch
    assert ArchConfig.from_yaml(arch.to_yaml()) == arch
    assert ArchConfig.from_json(arch.to_json()).key() == arch.key()
    # Through plain JSON (lists, ints for ratios) the key is unchanged.
    data = json.loads(arch.to_json())
    data["layers"][0]["mlp_ratio"] = 2
    assert ArchConfig.from_dict(data).key() == arch.key()


def test_key_is_stable_and_distinguishes_members():
    arch = make()
    assert arch.key() == make().key()
    assert len(arch.key()) == 40
    other = dataclasses.replace(arch, embed_dim=48)
    assert other.key() != arch.key()
    swapped = dataclasses.replace(arch, layers=tuple(reversed(arch.layers)))
    assert swapped.key() != arch.key()


def test_frozen_and_hashable():
    arch = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.embed_dim = 3
    assert {arch: 1}[make()] == 1


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(patch_size=5), "does not divide"),
        (dict(activation="swish"), "activation"),
        (dict(layers=()), "at least one layer"),
        (dict(embed_dim=0), "embed_dim"),
        (dict(layers=({"num_heads": 0, "mlp_ratio": 1.0},)), "num_heads"),
        (dict(layers=({"num_heads": 1, "mlp_ratio": 1.0, "attention": "magic"},)), "attention"),
    ],
)
def test_validation_on_construction(overrides, message):
    with pytest.raises(ArchError, match=message):
        make(**overrides)


def test_unknown_keys_are_rejected():
    data = make().to_dict() | {"colour": "red"}
    with pytest.raises(ArchError, match="colour"):
        ArchConfig.from_dict(data)


def test_derived_properties():
    arch = make()
    assert arch.depth == 2
    assert arch.num_tokens == 16
    assert arch.mlp_hidden(arch.layers[0]) == 64
    assert arch.input_shape == (1, 28, 28)
    assert arch.summary() == "p7 d32 L2 [2h/2x/sm 1h/1x/lin] gelu"


def small_hybrid() -> HybridArchConfig:
    return HybridArchConfig(
        image_size=28,
        in_channels=1,
        num_classes=10,
        head_dim=8,
        activation="gelu",
        stages=(
            {"width": 16, "conv_blocks": [{"expansion": 2, "conv_pattern": "2:4", "conv_sparsity": 0.5}]},
            {"width": 32, "attention_blocks": [{"num_heads": 2, "mlp_ratio": 2, "attention": "sqa"}]},
        ),
        space="test",
    )


def test_keys_are_pinned():
    """key() is the latency-table and study identity: these values were computed before the ops
    and networks moved out of layers.py, and must never change."""
    assert make().key() == "00b4592c783991ea8e7c1516fab917ec44f59fbf"
    assert small_hybrid().key() == "8a6521801b692d58561dbde48b31aec7134e0b4c"


@pytest.mark.parametrize("arch", [make(), small_hybrid()], ids=["vit", "hybrid"])
def test_every_record_carries_its_family_and_every_reader_requires_it(arch):
    data = arch.to_dict()
    assert data["family"] == arch.family and arch_from_dict(data) == arch
    del data["family"]  # never guessed from the fields (no stored record lacks the tag)
    with pytest.raises(ArchError, match="needs its 'family' key") as error:
        arch_from_dict(data)
    assert "\n" not in str(error.value)
    with pytest.raises(ArchError, match="needs its 'family' key"):
        type(arch).from_dict(data)
    other = next(family for family in FAMILIES if family != arch.family)
    with pytest.raises(ArchError, match=f"a {other!r} architecture is not"):
        type(arch).from_dict(data | {"family": other})
    with pytest.raises(ArchError, match="unknown architecture family 'cnn'"):
        arch_from_dict(data | {"family": "cnn"})

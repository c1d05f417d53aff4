"""ResNet-style members of the hybrid family (basic blocks, strided res downsampling, deep stem,
stem max pool) and the vit conv stem: records, spaces, supernet slicing, BatchNorm calibration,
ONNX, and a shipped baseline's family (resnet10t) expressed in hybrid_gpu's space."""

import dataclasses
import json
import random

import optuna
import pytest
import torch

from latency_models.blocks import decompose
from nas.config import compose, instantiate
from search_spaces.arch import ArchConfig, ArchError, HybridArchConfig, ResBlockConfig, arch_from_dict
from search_spaces.base import SpaceError
from search_spaces.hybrid import HybridSpace
from search_spaces.ops import BasicBlock, ResDownsample
from search_spaces.vit import VitSpace
from tests.conftest import HYBRID, VIT, assert_extracts_and_exports
from tests.search_spaces_tests.test_hybrid import enumerate_members, small_arch

# HYBRID with every new choice: stems, pool, residual blocks and both kinds of downsampling.
RES = HYBRID | dict(
    stages=[
        {"width": [8, 16], "res_blocks": [0, 2], "conv_blocks": [0, 1], "attention_blocks": [0, 0]},
        {"width": [16, 24], "res_blocks": [0, 1], "conv_blocks": [0, 1], "attention_blocks": [0, 1],
         "downsample": ["reduce", "res"]},
        {"width": [24, 32], "res_blocks": [0, 1], "conv_blocks": [0, 1], "attention_blocks": [0, 1],
         "downsample": ["res", "reduce"]},
    ],
    res_ratio=[0.5, 1.0],
    stem=["deep", "conv"],
    stem_pool=[False, True],
    min_stages=2,
    conv_pattern=["dense", "structured"],
)  # fmt: skip


def resnet_like(**overrides) -> HybridArchConfig:
    fields = dict(
        image_size=32,
        in_channels=3,
        num_classes=10,
        head_dim=8,
        activation="relu",
        stages=(
            {"width": 16, "res_blocks": [{"ratio": 0.5}, {}]},
            {"width": 32, "downsample": "res", "conv_blocks": [{"expansion": 2}]},
        ),
        stem="deep",
        stem_pool=True,
    )
    return HybridArchConfig(**(fields | overrides))


def test_round_trip_and_keys():
    arch = resnet_like()
    assert isinstance(arch.stages[0].res_blocks[0], ResBlockConfig)
    assert HybridArchConfig.from_json(arch.to_json()) == arch
    assert HybridArchConfig.from_yaml(arch.to_yaml()) == arch
    assert arch_from_dict(json.loads(arch.to_json())).key() == arch.key()
    assert arch.depth == 4 and arch.resolutions() == [8, 4]  # 32 -> 16 (stem) -> 8 (pool) -> 4
    assert arch.summary() == "deep+pool | w16 r0.5x r1x | w32 rd c2x relu"
    for changed in (resnet_like(stem="conv"), resnet_like(stem_pool=False)):
        assert changed.key() != arch.key()
    # A record written before the new fields existed loads, with the key it had then (pinned in
    # test_arch), and a new record with the new fields at their defaults has that key too.
    old = small_arch().to_dict()
    for name in ("stem", "stem_pool"):
        del old[name]
    for stage in old["stages"]:
        del stage["res_blocks"], stage["downsample"]
    assert arch_from_dict(old) == small_arch() and arch_from_dict(old).key() == small_arch().key()
    vit = ArchConfig(32, 3, 10, 4, 16, 8, "relu", ({"num_heads": 1, "mlp_ratio": 1},))
    assert dataclasses.replace(vit, stem="conv").key() != vit.key()
    assert ArchConfig.from_json(dataclasses.replace(vit, stem="conv").to_json()).stem == "conv"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(stem="resnet"), "stem must be one of"),
        (dict(stem_pool="yes"), "stem_pool must be true or false"),
        (dict(stages=({"width": 8, "downsample": "res", "res_blocks": [{}]},)), "stage 0 has no downsample"),
        (dict(stages=({"width": 8, "res_blocks": [{}]}, {"width": 8, "downsample": "max"})), "downsample"),
        (dict(stages=({"width": 8, "res_blocks": [{"ratio": 0}]},)), "ratio"),
    ],
)
def test_invalid_records_are_rejected(overrides, message):
    with pytest.raises(ArchError, match=message):
        resnet_like(**overrides)
    with pytest.raises(ArchError, match="stem conv needs patch_size divisible by 4"):
        ArchConfig(28, 1, 10, 7, 16, 8, "relu", ({"num_heads": 1, "mlp_ratio": 1},), stem="conv")


def test_space_suggests_rebuilds_and_counts_its_members(tmp_path):
    space = HybridSpace(**RES)
    assert space.stem == ["conv", "deep"] and space.stem_pool == [True, False]  # cheapest first
    largest, smallest = space.largest(), space.smallest()
    assert (largest.stem, largest.stem_pool, len(largest.stages)) == ("deep", False, 3)
    assert [st.downsample for st in largest.stages] == ["reduce", "res", "res"]
    assert (smallest.stem, smallest.stem_pool, len(smallest.stages)) == ("conv", True, 2)
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path}/s.db", sampler=optuna.samplers.RandomSampler(0)
    )
    for _ in range(20):
        trial = study.ask()
        arch = space.suggest(trial)
        study.tell(trial, 0.0)
        assert space.from_params(trial.params) == arch
        assert ("stage2.width" in trial.params) == (len(arch.stages) == 3)  # optional stage
    small = HybridSpace(
        **RES
        | dict(
            stages=[
                {"width": [8], "res_blocks": [1, 2], "conv_blocks": [0, 1], "attention_blocks": [0, 0]},
                {
                    "width": [16],
                    "res_blocks": [0, 1],
                    "conv_blocks": [0, 0],
                    "attention_blocks": [0, 0],
                    "downsample": ["reduce", "res"],
                },
            ],  # fmt: skip
            min_stages=1,
            expansion=[2],
            conv_pattern=["dense"],
        )
    )
    members = enumerate_members(small)
    res, conv = 2, 1  # ratios; expansions x patterns
    stage0 = (res + res**2) * (1 + conv)
    by_hand = 2 * 2 * 2 * (stage0 + stage0 * 2 * (1 + res))  # activation x stem x pool x (1 or 2 stages)
    assert small.size() == len(members) == len({m.key() for m in members}) == by_hand
    assert {"stem", "stem_pool", "stages", "res<j>.ratio"} <= set(space.axes())


def _one_stage(**keys) -> list[dict]:
    return [{"width": [8], "res_blocks": [1, 1], "conv_blocks": [0, 0], "attention_blocks": [0, 0]} | keys]


def test_space_errors_name_the_key():
    bad = [
        (dict(stem=["conv", "resnet"]), r"space\.stem: 'resnet' is not one of"),
        (dict(stem_pool=[1]), r"space\.stem_pool"),
        (dict(min_stages=4), r"space\.min_stages: expected an int in \[1, 3\]"),
        (dict(res_ratio=[0]), r"space\.res_ratio"),
        (
            dict(stages=_one_stage(downsample=["res"]), min_stages=1),
            r"space\.stages\[0\]\.downsample: the first stage has no downsample",
        ),
        (dict(stages=_one_stage(res_blocks=[2, 1]), min_stages=1), r"space\.stages\[0\]\.res_blocks"),
        (dict(stages=_one_stage(res_blocks=[0, 1]), min_stages=1), r"space\.stages: the smallest member"),
    ]
    for overrides, message in bad:
        with pytest.raises(SpaceError, match=message):
            HybridSpace(**(RES | overrides))


@pytest.fixture(scope="module")
def res_space():
    return HybridSpace(**RES)


@pytest.fixture(scope="module")
def res_supernet(res_space):
    torch.manual_seed(0)
    net = res_space.make_supernet()
    net.set_normalization(torch.tensor([0.3]), torch.tensor([0.4]))
    with torch.no_grad():  # non-trivial weights so that slicing mistakes show
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    net.set_calibration((torch.rand(40, 1, 28, 28) * 255).to(torch.uint8))
    return net.eval()


def test_members_slice_extract_and_export(res_space, res_supernet):
    names = {name for name, _ in res_supernet.named_parameters()}
    assert any(name.startswith("alternatives.") for name in names)  # the conv stem, reduce downsampling
    rng = random.Random(3)
    images = torch.rand(3, 1, 28, 28)
    members = [res_space.largest(), res_space.smallest()] + [res_space.sample(rng) for _ in range(12)]
    kinds = {(m.stem, m.stem_pool) for m in members} | {st.downsample for m in members for st in m.stages[1:]}
    assert {("deep", False), ("conv", True), "res", "reduce"} <= kinds
    for i, arch in enumerate(members):
        if i < 4:
            assert_extracts_and_exports(res_supernet, arch, images)
        else:
            model = res_supernet.extract(arch)
            with torch.no_grad():
                torch.testing.assert_close(res_supernet(images, arch), model(images), rtol=0, atol=1e-5)
    model = res_supernet.extract(res_space.largest())
    assert any(isinstance(m, BasicBlock) for m in model.modules())
    assert any(isinstance(m, ResDownsample) for m in model.modules())


def test_batchnorm_statistics_are_each_members_own(res_space, res_supernet):
    """Extracted (and eval-mode) members normalise with the statistics of their own activations
    on the calibration images, not with running averages shared by every member."""
    arch = res_space.largest()
    model = res_supernet.extract(arch)
    first = model.deep_stem.convs[0]  # conv, BatchNorm, ReLU
    images = res_supernet.calibration[: int(res_supernet.calibration_count)].float() / 255
    with torch.no_grad():
        features = first[0]((images - model.mean) / model.std)
    torch.testing.assert_close(first[1].running_mean, features.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    other = dataclasses.replace(arch, stages=(dataclasses.replace(arch.stages[0], width=8), *arch.stages[1:]))
    other_stats = res_supernet.extract(other).deep_stem.convs[2][1].running_mean
    assert not torch.allclose(other_stats, model.deep_stem.convs[2][1].running_mean[:8])
    # Training steps change the weights: the statistics are computed again afterwards.
    res_supernet.train()
    res_supernet(torch.rand(4, 1, 28, 28), arch).sum().backward()
    res_supernet.zero_grad(set_to_none=True)
    res_supernet.eval()
    assert not res_supernet._stats


def test_latency_blocks_of_residual_members(res_space):
    arch = res_space.largest()
    blocks = decompose(arch)
    kinds = [b.kind for b in blocks]
    assert "res" in kinds and "res_down" in kinds
    assert dict(blocks[0].options)["stem"] == "deep"
    for block in blocks:
        x = torch.rand(1, *block.input_shape)
        with torch.no_grad():
            block.build()(x)
    old = small_arch()  # an architecture of before: its blocks' keys are those of before
    assert "stem" not in dict(decompose(old)[0].options)


def test_vit_conv_stem_where_the_patch_allows_it(tmp_path):
    space = VitSpace(**VIT | {"stem": ["conv", "patch"], "embed_dim": [16, 24], "depth": [1, 2]})
    assert space.stems_for(4) == ["patch", "conv"] and space.stems_for(7) == ["patch"]
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path}/s.db", sampler=optuna.samplers.RandomSampler(1)
    )
    seen = set()
    for _ in range(16):
        trial = study.ask()
        arch = space.suggest(trial)
        study.tell(trial, 0.0)
        assert space.from_params(trial.params) == arch
        assert ("stem" in trial.params) == (arch.patch_size == 4)
        seen.add((arch.patch_size, arch.stem))
    assert {(4, "conv"), (4, "patch"), (7, "patch")} <= seen
    torch.manual_seed(0)
    net = space.make_supernet()
    net.set_calibration((torch.rand(32, 1, 28, 28) * 255).to(torch.uint8))
    net.eval()
    largest = space.largest()
    assert largest.stem == "conv" and largest.patch_size == 4
    images = torch.rand(2, 1, 28, 28)
    for arch in (
        largest,
        dataclasses.replace(largest, stem="patch"),
        dataclasses.replace(largest, patch_size=7, stem="patch"),
    ):
        assert_extracts_and_exports(net, arch, images)
    only_conv = VitSpace(**VIT | {"stem": ["conv"]})
    assert only_conv.patch_size == [4]  # 7 is no multiple of the conv stem's stride
    with pytest.raises(SpaceError, match="space.embed_dim: the conv stem needs even widths"):
        VitSpace(**VIT | {"stem": ["conv"], "embed_dim": [15]})
    without = VitSpace(**VIT)  # no conv stem: the supernet of before, no BatchNorm to calibrate
    assert without.make_supernet().calibration_size == 0


def test_resnet10t_is_a_member_of_hybrid_gpu():
    """conf/baselines' resnet10t (deep tiered stem, max pool, basic blocks 64/128/256/512, one per
    stage, strided first blocks with avg-pooled shortcuts) is expressible in hybrid_gpu at 32 px:
    the member extracts to plain PyTorch and has resnet10t's parameter count (to the LayerNorm
    before the head)."""
    timm = pytest.importorskip("timm")
    space = instantiate(
        "space", compose(["+space=hybrid_gpu"]).space, image_size=32, in_channels=3, num_classes=10
    )
    params = {
        "activation": "relu",
        "stem": "deep",
        "stem_pool": True,
        "stages": 4,
        "stage0.width": 64, "stage0.res_blocks": 1, "stage0.res0.ratio": 1.0, "stage0.conv_blocks": 0,
        "stage1.width": 128, "stage1.downsample": "res", "stage1.res_blocks": 0, "stage1.conv_blocks": 0,
        "stage1.attention_blocks": 0,
        "stage2.width": 256, "stage2.downsample": "res", "stage2.res_blocks": 0, "stage2.conv_blocks": 0,
        "stage2.attention_blocks": 0,
        "stage3.width": 512, "stage3.downsample": "res", "stage3.res_blocks": 0, "stage3.attention_blocks": 0,
    }  # fmt: skip
    params = {
        k: v for k, v in params.items() if k in space.extreme_params("largest")
    }  # fixed axes are no params
    arch = space.from_params(params)
    assert arch.summary() == "deep+pool | w64 r1x | w128 rd | w256 rd | w512 rd relu"
    assert arch.resolutions() == [8, 4, 2, 1]
    net = space.make_supernet()
    net.check(arch)
    model = net.extract(arch)
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    ours = sum(p.numel() for p in model.parameters())
    theirs = sum(p.numel() for p in timm.create_model("resnet10t", num_classes=10).parameters())
    assert abs(ours - theirs) / theirs < 0.15
    assert abs(ours - theirs) == 2 * 512  # resnet10t has no LayerNorm before its head


def test_residual_blocks_start_as_their_shortcut():
    """Each residual block's last BatchNorm starts at zero (timm's zero_init_last), in a fresh
    member and in a supernet, so a deep residual stack starts stable."""
    from search_spaces.networks import build_model

    model = build_model(resnet_like())
    blocks = [m for m in model.modules() if isinstance(m, (BasicBlock, ResDownsample))]
    assert len(blocks) == 3  # two basic blocks and one strided res downsampling
    x = torch.randn(4, 16, 8, 8)
    basic = next(m for m in blocks if isinstance(m, BasicBlock))
    torch.testing.assert_close(basic.eval()(x), torch.relu(x))
    down = next(m for m in blocks if isinstance(m, ResDownsample)).eval()
    y = torch.randn(4, 16, 8, 8)
    torch.testing.assert_close(down(y), torch.relu(down.proj_bn(down.proj(down.pool(y)))))
    supernet = HybridSpace(**RES).make_supernet()
    zeroed = [m.conv2[1].weight for m in supernet.modules() if isinstance(m, (BasicBlock, ResDownsample))]
    assert zeroed and all(torch.count_nonzero(w) == 0 for w in zeroed)

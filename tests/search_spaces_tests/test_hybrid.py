"""The hybrid conv -> attention family: arch, space, supernet slicing, SparseConv2d, ONNX."""

import dataclasses
import json
import random

import optuna
import pytest
import torch

from search_spaces.arch import ArchError, ConvBlockConfig, HybridArchConfig, LayerConfig, arch_from_dict
from search_spaces.hybrid import HybridSpace
from search_spaces.networks import HybridNet
from search_spaces.ops import ConvMlp, Downsample
from search_spaces.supernet import HybridSupernet
from search_spaces.vit import SpaceError
from tests.conftest import HYBRID, assert_extracts_and_exports


def small_arch(**overrides) -> HybridArchConfig:
    fields = dict(
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
    return HybridArchConfig(**(fields | overrides))


def test_round_trip_key_and_family_dispatch():
    arch = small_arch()
    assert isinstance(arch.stages[0].conv_blocks[0], ConvBlockConfig)
    assert isinstance(arch.stages[1].attention_blocks[0], LayerConfig)
    assert HybridArchConfig.from_json(arch.to_json()) == arch
    assert HybridArchConfig.from_yaml(arch.to_yaml()) == arch
    assert arch_from_dict(json.loads(arch.to_json())) == arch  # by its "family" tag
    assert arch_from_dict(json.loads(arch.to_json())).key() == arch.key()
    assert arch.depth == 2 and arch.resolutions() == [14, 7]
    assert small_arch(activation="relu").key() != arch.key()
    assert "w16 c2x/2:4 | w32 [2h/2x/sqa] gelu" == arch.summary()


@pytest.mark.parametrize(
    "stages, message",
    [
        ((), "at least one stage"),
        (({"width": 16},), "at least one conv or attention block"),
        (({"width": 16, "conv_blocks": [{"expansion": 1, "conv_pattern": "3:4"}]},), "conv_pattern"),
        (
            ({"width": 12, "conv_blocks": [{"expansion": 2, "conv_pattern": "4:8", "conv_sparsity": 0.5}]},),
            "8",
        ),
        (({"width": 16, "conv_blocks": [{"expansion": 0}]},), "expansion"),
        (({"width": 0, "conv_blocks": [{"expansion": 1}]},), "width"),
    ],
)
def test_invalid_hybrids_are_rejected(stages, message):
    with pytest.raises(ArchError, match=message):
        small_arch(stages=stages)


def test_suggest_rebuild_and_conditional_params(hybrid_space, tmp_path):
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path}/s.db", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    archs = {}
    for _ in range(25):
        trial = study.ask()
        archs[trial.number] = hybrid_space.suggest(trial)
        study.tell(trial, 0.0)
    for trial in study.get_trials():
        arch = archs[trial.number]
        assert hybrid_space.from_params(trial.params) == arch
        for i, stage in enumerate(arch.stages):  # only existing blocks are asked about
            asked = {
                k.split(".")[1] for k in trial.params if k.startswith(f"stage{i}.") and k.count(".") == 2
            }
            assert asked == {f"conv{j}" for j in range(len(stage.conv_blocks))} | {
                f"attn{j}" for j in range(len(stage.attention_blocks))
            }


class PathSuggester:
    """Takes the choices in ``path`` (indices), then the first option, recording the branches."""

    def __init__(self, path: list[int]) -> None:
        self.path, self.asked = path, []

    def _pick(self, n: int) -> int:
        i = len(self.asked)
        self.asked.append(n)
        return self.path[i] if i < len(self.path) else 0

    def categorical(self, name, choices):
        return list(choices)[self._pick(len(choices))]

    def integer(self, name, low, high):
        return low + self._pick(high - low + 1)


def enumerate_members(space) -> list:
    """Every member, by depth-first search over the space's own decisions."""
    members, stack = [], [[]]
    while stack:
        path = stack.pop()
        s = PathSuggester(path)
        members.append(space.build(s))
        for j in range(len(path), len(s.asked)):
            for k in range(1, s.asked[j]):
                stack.append(path + [0] * (j - len(path)) + [k])
    return members


def test_size_matches_brute_force_enumeration():
    space = HybridSpace(
        **HYBRID
        | dict(
            stages=[
                {"width": [8, 16], "conv_blocks": [1, 2], "attention_blocks": [0, 0]},
                {"width": [16], "conv_blocks": [0, 1], "attention_blocks": [0, 1]},
            ],
            expansion=[2],
            conv_pattern=["dense", "structured"],
            conv_sparsity=[0.5, 0.75],
            attention=["linear", "softmax"],
            mlp_pattern=["dense"],
            num_heads=[1],
            mlp_ratio=[1],
        )
    )
    members = enumerate_members(space)
    conv = 3  # dense, structured 50 %, structured 75 %
    by_hand = 2 * (2 * (conv + conv**2)) * ((1 + conv) * (1 + 2))  # activation x stage 0 x stage 1
    assert space.size() == len(members) == len({m.key() for m in members}) == by_hand


def test_space_errors_name_the_key():
    bad = [
        (
            dict(stages=[{"width": [16], "conv_blocks": [1, 2], "attention_blocks": [0, 0], "heads": 2}]),
            r"space\.stages\[0\]: unknown key 'heads'",
        ),
        (
            dict(stages=[{"width": [16], "conv_blocks": [2, 1], "attention_blocks": [0, 0]}]),
            r"space\.stages\[0\]\.conv_blocks",
        ),
        (
            dict(stages=[{"width": [16], "conv_blocks": [0, 1], "attention_blocks": [0, 1]}]),
            r"space\.stages: the smallest member",
        ),
        (
            dict(stages=[{"width": [16], "attention_blocks": [1, 1]}]),
            r"space\.stages\[0\]\.conv_blocks: no value",
        ),
        (dict(conv_pattern=["dense", 124]), r'space\.conv_pattern: 124 .*write "2:4"'),
        (
            dict(
                stages=[{"width": [12], "conv_blocks": [1, 1], "attention_blocks": [0, 0]}],
                conv_pattern=["4:8"],
            ),
            r"space\.conv_pattern: 4:8 needs widths divisible by 8",
        ),
    ]
    for overrides, message in bad:
        with pytest.raises(SpaceError, match=message):
            HybridSpace(**(HYBRID | overrides))


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    net = HybridSupernet.from_space(HybridSpace(**HYBRID))
    net.set_normalization(torch.tensor([0.3]), torch.tensor([0.4]))
    with torch.no_grad():  # non-trivial weights so that slicing mistakes show
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def test_extracted_hybrid_equals_supernet_and_exports(hybrid_space, supernet):
    rng = random.Random(1)
    images = torch.rand(3, 1, 28, 28)
    members = [hybrid_space.largest(), hybrid_space.smallest()] + [
        hybrid_space.sample(rng) for _ in range(20)
    ]
    for i, arch in enumerate(members):
        if i < 6:  # also through ONNX Runtime
            assert_extracts_and_exports(supernet, arch, images)
            continue
        model = supernet.extract(arch)
        assert isinstance(model, HybridNet)
        with torch.no_grad():
            torch.testing.assert_close(supernet(images, arch), model(images), rtol=0, atol=1e-5)


def with_conv(arch, pattern, level):
    stages = tuple(
        dataclasses.replace(
            st,
            conv_blocks=tuple(
                dataclasses.replace(b, conv_pattern=pattern, conv_sparsity=level) for b in st.conv_blocks
            ),
        )
        for st in arch.stages
    )
    return dataclasses.replace(arch, stages=stages)


@pytest.mark.parametrize(
    "pattern, level",
    [("unstructured", 0.75), ("2:4", 0.5), ("4:8", 0.5), ("block", 0.75), ("structured", 0.5)],
)
def test_sparse_conv_masks_are_what_they_claim(hybrid_space, supernet, pattern, level):
    arch = with_conv(hybrid_space.largest(), pattern, level)
    model = supernet.extract(arch)
    convs = [m for m in model.modules() if isinstance(m, ConvMlp)]
    assert convs
    for conv in convs:
        if pattern == "structured":  # physically fewer hidden channels
            assert (
                conv.fc1.out_channels
                == conv.fc2.in_channels
                == round(conv.hidden * (1 - level))
                < conv.hidden
            )
            assert conv.fc1.weight.count_nonzero() == conv.fc1.weight.numel()
            continue
        assert conv.fc1.out_channels == conv.hidden
        for weight in (conv.fc1.weight, conv.fc2.weight):  # (out, in, kh, kw)
            matrix = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)  # input channels innermost
            zeros = (matrix == 0).float().mean().item()
            assert zeros == pytest.approx(level, abs=0.02)
            if ":" in pattern:  # N:M -- at most N of every M consecutive input channels
                n, m = map(int, pattern.split(":"))
                assert (matrix.view(matrix.shape[0], -1, m) != 0).sum(-1).max() <= n
            if pattern == "block":
                blocks = matrix.view(matrix.shape[0] // 4, 4, -1, 4).ne(0).sum(dim=(1, 3))
                assert set(blocks.unique().tolist()) <= {0, 16}


def assert_exports_exactly(supernet, arch):
    assert_extracts_and_exports(supernet, arch, torch.rand(2, 1, 28, 28))


@pytest.mark.parametrize(
    "pattern, level",
    [("dense", 0.0), ("unstructured", 0.5), ("2:4", 0.5), ("block", 0.5), ("structured", 0.75)],
)
def test_every_conv_pattern_extracts_and_exports(hybrid_space, supernet, pattern, level):
    assert_exports_exactly(supernet, with_conv(hybrid_space.largest(), pattern, level))


@pytest.mark.parametrize("kind", HYBRID["attention"] + ["none", "gqa", "mqa"])
def test_every_attention_variant_in_low_resolution_stages(hybrid_space, supernet, kind):
    arch = hybrid_space.largest()  # attention on 7x7 and 4x4 maps
    stages = tuple(
        dataclasses.replace(
            st, attention_blocks=tuple(dataclasses.replace(b, attention=kind) for b in st.attention_blocks)
        )
        for st in arch.stages
    )
    assert_exports_exactly(supernet, dataclasses.replace(arch, stages=stages))


def test_conv_gradients_respect_slices_and_masks(hybrid_space, supernet):
    arch = with_conv(hybrid_space.smallest(), "2:4", 0.5)
    supernet.train()
    try:
        supernet.zero_grad()
        supernet(torch.rand(2, 1, 28, 28), arch).sum().backward()
    finally:
        supernet.eval()
    weight = supernet.body.stages[0].conv_blocks[0].mlp.fc1.weight  # (max hidden, max width, 3, 3)
    hidden, width = arch.stages[0].conv_blocks[0].expansion * arch.stages[0].width, arch.stages[0].width
    assert weight.grad[: int(hidden), :width].abs().sum() > 0  # straight through to all active weights
    assert weight.grad[int(hidden) :].abs().sum() == 0 and weight.grad[:, width:].abs().sum() == 0


def test_downsample_has_a_residual_path():
    down = Downsample(8, 16)
    with torch.no_grad():
        down.conv.weight.zero_()
        down.conv.bias.zero_()
    x = torch.rand(1, 8, 7, 7)
    out = down(x)
    assert out.shape == (1, 16, 4, 4)
    torch.testing.assert_close(out, down.shortcut(torch.nn.functional.avg_pool2d(x, 2, ceil_mode=True)))


def test_rejects_non_members(hybrid_space, supernet):
    big = hybrid_space.largest()
    wider = dataclasses.replace(big, stages=(dataclasses.replace(big.stages[0], width=64),) + big.stages[1:])
    with pytest.raises(ValueError, match="not a member"):
        supernet.extract(wider)
    deeper = dataclasses.replace(big, stages=big.stages + big.stages[-1:])
    with pytest.raises(ValueError, match="too deep"):
        supernet.extract(deeper)

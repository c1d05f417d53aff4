import itertools
import random

import optuna
import pytest

from search_spaces.vit import SpaceError, VitSpace
from tests.conftest import TINY, VIT


def test_suggest_then_rebuild_from_trial_params(tiny_space, tmp_path):
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path}/s.db", sampler=optuna.samplers.RandomSampler(seed=1)
    )
    archs = {}
    for _ in range(20):
        trial = study.ask()
        archs[trial.number] = tiny_space.suggest(trial)
        study.tell(trial, 0.0)
    for trial in study.get_trials():  # read back from SQLite
        assert tiny_space.from_params(trial.params) == archs[trial.number]
        # Only the active layers' choices are params: conditional by construction.
        assert {k.split(".")[0] for k in trial.params if k.startswith("layer")} == {
            f"layer{i}" for i in range(archs[trial.number].depth)
        }


def test_sample_is_seeded(vit_space):
    a = [vit_space.sample(random.Random(7)) for _ in range(2)]
    assert a[0] == a[1]
    assert len({vit_space.sample(random.Random(seed)).key() for seed in range(20)}) > 15


def test_largest_and_smallest_bound_every_member(vit_space):
    from latency_models.flops import count_flops
    from search_spaces.networks import build_model

    def cost(arch):
        return count_flops(build_model(arch), arch.input_shape)

    big, small = vit_space.largest(), vit_space.smallest()
    assert big.depth == 4 and big.embed_dim == 96 and big.patch_size == 4
    assert small.depth == 1 and small.embed_dim == 48 and small.patch_size == 7
    rng = random.Random(0)
    costs = [cost(vit_space.sample(rng)) for _ in range(30)]
    assert cost(small) <= min(costs) and max(costs) <= cost(big)


def test_size_matches_brute_force_enumeration(tiny_space):
    seen = set()
    choices = dict(patch_size=TINY["patch_size"], embed_dim=TINY["embed_dim"], activation=TINY["activation"])
    per_layer = list(itertools.product(TINY["num_heads"], TINY["mlp_ratio"], TINY["attention"]))
    for depth in range(1, 3):
        for fixed in itertools.product(*choices.values()):
            for layers in itertools.product(per_layer, repeat=depth):
                params = dict(zip(choices, fixed)) | {"depth": depth}
                for i, (h, m, a) in enumerate(layers):
                    params |= {
                        f"layer{i}.num_heads": h,
                        f"layer{i}.mlp_ratio": float(m),
                        f"layer{i}.attention": a,
                    }
                seen.add(tiny_space.from_params(params).key())
    assert len(seen) == tiny_space.size() == 576


def test_fixed_suggester_rejects_missing_or_foreign_values(tiny_space):
    study = optuna.create_study()
    trial = study.ask()
    arch = tiny_space.suggest(trial)
    params = trial.params
    assert tiny_space.from_params(params) == arch
    with pytest.raises(ValueError, match="embed_dim"):
        tiny_space.from_params(params | {"embed_dim": 17})
    with pytest.raises(KeyError, match="depth"):
        tiny_space.from_params({k: v for k, v in params.items() if k != "depth"})
    with pytest.raises(ValueError, match="not used"):
        tiny_space.from_params(params | {"layer7.num_heads": 1})


@pytest.mark.parametrize(
    "override, key",
    [
        (dict(patch_size=[5]), "space.patch_size"),
        (dict(attention=["softmax", "flash"]), "space.attention"),
        (dict(depth=[3, 1]), "space.depth"),
        (dict(embed_dim=[]), "space.embed_dim"),
        (dict(mlp_ratio=[1, 1]), "space.mlp_ratio"),
    ],
)
def test_impossible_space_definitions_name_the_key(override, key):
    with pytest.raises(SpaceError, match=key.replace(".", r"\.")):
        VitSpace(**(VIT | override))

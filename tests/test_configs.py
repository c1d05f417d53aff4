"""Every option of every conf group composes and instantiates."""

import pytest
from omegaconf import OmegaConf

from nas.config import GROUPS, compose, group_options, instantiate


def test_default_config_composes():
    cfg = compose([])
    assert cfg.storage == "sqlite:///nas.db" and cfg.n_trials == 50 and "space" not in cfg
    assert set(GROUPS) - {"space"} <= set(cfg)


@pytest.fixture
def predictor_file(tmp_path):
    from latency_models.hardware import fingerprint, fingerprint_id
    from latency_models.predictor import Predictor

    settings = {"name": "onnxruntime", "unit": "ms", "settings": {}}
    return Predictor(settings, fingerprint(), fingerprint_id(), weights=[0.0] * 5).save(tmp_path / "p.json")


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_instantiates(group, predictor_file):
    options = group_options(group)
    assert options
    # What an option needs here beyond its defaults (no GPU on the test machine, no fitted file).
    needs = {
        "imagefolder": ["dataset.root=x"],
        "torch": ["profiler.device=cpu"],
        "predictor": [f"profiler.path={predictor_file}"],
        "plugin": ["profiler.name=flops"],
        "remote": ["profiler.target=board"],  # builds without a server: it is asked when measuring
    }
    for name in options:
        prefix = "+" if group == "space" else ""
        cfg = compose([f"{prefix}{group}={name}"] + needs.get(name, []))
        node = cfg[group]
        assert "_target_" in node
        extra = {}
        if group == "space":
            extra = dict(image_size=28, in_channels=1, num_classes=10)
        if group == "sampler":
            extra = dict(seed=0)
        obj = instantiate(group, node, **extra)
        assert obj is not None
        OmegaConf.to_container(node, resolve=True)  # interpolations resolve


def test_user_config_dir_adds_a_space(tmp_path):
    (tmp_path / "space").mkdir()
    (tmp_path / "space" / "mine.yaml").write_text(
        "_target_: search_spaces.vit.VitSpace\nname: mine\npatch_size: [7]\nembed_dim: [8]\n"
        "depth: [1, 1]\nhead_dim: 4\nnum_heads: [1]\nmlp_ratio: [1]\nattention: [linear]\n"
        "activation: [relu]\n"
    )
    assert "mine" in group_options("space", [str(tmp_path)])
    cfg = compose(["+space=mine"], [str(tmp_path)])
    space = instantiate("space", cfg.space, image_size=28, in_channels=1, num_classes=10)
    assert space.size() == 1

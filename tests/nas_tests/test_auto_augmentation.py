"""``flip: auto`` / ``translate: auto``: chosen from the images themselves (gray files saved as RGB
are gray), a dataset's ``flip_safe`` overrides the colour rule, explicit keys win, the resolved
values are printed with the run's header and recorded with the study, and ``nas train`` uses the
study's record (its recipe key holds the resolved values, never "auto")."""

from __future__ import annotations

import shutil

import numpy as np
import optuna
import pytest
import torch
from PIL import Image

from nas.augment import Augmentation, auto_augmentation, is_grayscale, resolve_augmentation
from nas.config import compose
from nas.data import Embedded, ImageData
from nas.image_folder import ImageFolder
from nas.records import STUDY_ATTR
from nas.search.setup import prepare
from nas.supernet_training import Recipe
from nas.training.recipe import RetrainRecipe
from tests.conftest import TINY_SEARCH, run_in_process

QUICK = ["retrain.epochs=1", "retrain.warmup_epochs=0", "retrain.batch_size=256", "progress=false"]


def _coloured(gray: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) gray -> (N, 3, H, W) with channels that differ, like natural photographs."""
    return torch.cat([gray, gray // 2, 255 - gray], dim=1)


def test_the_images_decide_and_a_dataset_may_forbid_flips():
    gray = Embedded().load()
    assert auto_augmentation(gray) == Augmentation(False, 4, "grayscale images")  # 28 px: 28 / 8 -> 4
    as_rgb = ImageData.of("rgb", gray.images[:500].expand(-1, 3, -1, -1).contiguous(), gray.labels[:500], 10)
    assert as_rgb.in_channels == 3 and is_grayscale(as_rgb)  # three equal channels are gray
    colour = ImageData.of("colour", _coloured(gray.images[:500]), gray.labels[:500], 10)
    assert auto_augmentation(colour) == Augmentation(True, 4, "natural RGB images")
    big = ImageData.of(
        "big", torch.zeros(4, 3, 64, 64, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), 1
    )
    assert auto_augmentation(big).translate == 8  # an eighth of the side
    colour.flip_safe = False  # e.g. digits or text: a mirrored image is another class
    assert auto_augmentation(colour) == Augmentation(False, 4, "dataset.flip_safe=false")
    assert Embedded(flip_safe=True).load().flip_safe is True


def test_gray_jpegs_saved_as_rgb_are_gray_resident_or_streamed(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "gray" / label).mkdir(parents=True)
        (tmp_path / "colour" / label).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (32, 32), dtype=np.uint8)
            Image.fromarray(pixels).convert("RGB").save(tmp_path / "gray" / label / f"{i}.jpg", quality=90)
            rgb = np.stack([pixels, pixels // 2, 255 - pixels], axis=-1)
            Image.fromarray(rgb).save(tmp_path / "colour" / label / f"{i}.jpg", quality=90)
    for memory in (4096, 0):  # decoded once, or streamed from disk
        gray = ImageFolder(str(tmp_path / "gray"), max_memory_mb=memory, workers=0).load()
        colour = ImageFolder(str(tmp_path / "colour"), max_memory_mb=memory, workers=0).load()
        assert gray.in_channels == 3 and gray.streamed == (memory == 0)
        assert auto_augmentation(gray).flip is False and auto_augmentation(colour).flip is True


def test_explicit_values_win_and_keys_hold_resolved_values():
    auto = Augmentation(True, 4, "natural RGB images")
    assert resolve_augmentation(RetrainRecipe(flip="auto", translate="auto"), auto) == RetrainRecipe(
        flip=True, translate=4
    )
    assert resolve_augmentation(RetrainRecipe(flip=False, translate="auto"), auto) == RetrainRecipe(
        translate=4
    )
    resolved = resolve_augmentation(RetrainRecipe(flip="auto", translate="auto"), auto)
    assert resolved.key() == RetrainRecipe(flip=True, translate=4).key()
    assert resolve_augmentation(Recipe(translate="auto"), auto).translate == 4
    for bad in (dict(flip="sometimes"), dict(translate=-1), dict(translate="far")):
        with pytest.raises(ValueError, match="flip|translate"):
            Recipe(**bad)


def test_a_search_setup_resolves_auto_and_says_so():
    cfg = compose(["+space=tiny", "supernet=gpu", "device=cpu"])
    assert (cfg.supernet.flip, cfg.supernet.translate, cfg.retrain.flip) == ("auto", "auto", "auto")
    assert compose(["retrain=gpu"]).retrain.translate == "auto"
    setup = prepare(cfg)
    assert (setup.recipe.flip, setup.recipe.translate) == (False, 4)
    assert setup.augmentation["auto"] == {"flip": False, "translate": 4, "why": "grayscale images"}
    assert (
        setup.augmentation["line"]
        == "supernet augmentation: flip off, translate 4 px (auto: grayscale images)"
    )
    explicit = prepare(
        compose(["+space=tiny", "supernet=gpu", "device=cpu", "supernet.flip=true", "supernet.translate=0"])
    )
    assert (explicit.recipe.flip, explicit.recipe.translate) == (True, 0)
    assert explicit.augmentation["line"] == (
        "supernet augmentation: flip on (set), translate 0 px (set) "
        "(auto would be flip off, translate 4 px: grayscale images)"
    )
    # The short CPU recipe keeps no augmentation (auto cost it points at 12 epochs): explicit values.
    short = compose(["+space=tiny"]).supernet
    assert (short.flip, short.translate) == (False, 0)
    assert explicit.identity["supernet_key"] != setup.identity["supernet_key"]


def test_the_study_records_auto_and_nas_train_follows_it(tiny_study, tmp_path):
    folder = tmp_path / "study"
    shutil.copytree(tiny_study, folder)
    storage = f"sqlite:///{folder}/nas.db"
    info = optuna.load_study(study_name=None, storage=storage).user_attrs[STUDY_ATTR]
    assert info["augmentation"] == {
        "auto": {"flip": False, "translate": 4, "why": "grayscale images"},
        "supernet": {"flip": False, "translate": 0},  # the short recipe's explicit values
    }
    assert info["supernet"]["recipe"]["translate"] == 0 and info["supernet"]["recipe"]["flip"] is False
    # What the study recorded "auto" to be is what nas train uses (here: flips, as if the search
    # had seen RGB photographs), not what it would decide from the data now.
    code, out, err = run_in_process("search", *TINY_SEARCH, "n_trials=5", cwd=folder)  # one more trial
    line = (
        "supernet augmentation: flip off (set), translate 0 px (set) (auto would be flip off, translate 4 px"
    )
    assert code == 0 and line in out, out
    study = optuna.load_study(study_name=None, storage=storage)
    recorded = info | {"augmentation": {"auto": {"flip": True, "translate": 3, "why": "natural RGB images"}}}
    study.set_user_attr(STUDY_ATTR, recorded)
    code, out, err = run_in_process("train", "trial=0", *QUICK, cwd=folder)
    assert code == 0, out + err
    assert "retrain augmentation: flip on, translate 3 px (auto: natural RGB images), as recorded" in out
    (record,) = [v for k, v in study.user_attrs.items() if k.startswith("retrained:0:")]
    assert record["recipe"]["flip"] is True and record["recipe"]["translate"] == 3
    key = RetrainRecipe(**record["recipe"]).key()  # of the resolved recipe: "auto" is in no key
    assert any(k.startswith("retrained:0:") and k.endswith(key) for k in study.user_attrs)
    code, out, err = run_in_process("train", "trial=0", *QUICK, "retrain.flip=false", cwd=folder)
    assert code == 0 and "flip off (set), translate 3 px" in out, out + err

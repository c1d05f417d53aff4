"""Everything a search needs, checked and built before anything is written (``prepare``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from sqlalchemy.engine import make_url

from infra.errors import UserError
from infra.storage import check_storage_url, sqlite_path
from latency_models import LatencyProfiler
from latency_models._base import hardware_for
from latency_models.hardware import fingerprint
from latency_models.quantize import quantization_of
from nas.augment import auto_augmentation, describe_augmentation, resolve_augmentation
from nas.config import check_writable, group_options, instantiate, instantiate_space, to_container
from nas.data import ImageData
from nas.latency import build_profiler
from nas.quantized import calibrate
from nas.supernet_training import Recipe, resolve_device, supernet_key
from search_spaces.base import SearchSpace


@dataclass(frozen=True, kw_only=True)
class Setup:
    """A checked search: the config, the objects it built and what its figures are valid for."""

    cfg: DictConfig
    space: SearchSpace
    space_config: dict[str, Any]  # the space's config node, as stored with the study
    data: ImageData
    train_idx: torch.Tensor  # supernet training split
    val_idx: torch.Tensor  # held out of the training data to score candidates
    split: dict[str, Any]  # how the split was made (val_fraction, seed)
    recipe: Recipe
    profiler: LatencyProfiler
    study_name: str
    objectives: list[str]
    accuracy: str  # what the accuracy objective scores: float or int8 (the profiler's int8 model)
    identity: dict[str, Any]  # what the study's figures are valid for (a rerun must match)
    config_dirs: list[str] = field(default_factory=list)
    # What flip/translate "auto" is for the data, the supernet's resolved values, the header line:
    # recorded with the study, so that nas train's "auto" means what the search's did.
    augmentation: dict[str, Any] = field(default_factory=dict)


def prepare(cfg: DictConfig, config_dirs: list[str] = ()) -> Setup:
    """Check everything a search needs and build it, writing nothing (types, ranges and unknown
    keys were checked when the config was composed: nas.schema)."""
    if "space" not in cfg:
        valid = ", ".join(group_options("space", config_dirs))
        raise UserError(f"space: none given; add +space=NAME (valid: {valid})")
    check_storage_url(cfg.storage, writing=True)
    check_writable("cache_dir", Path(cfg.cache_dir))
    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device: {cfg.device!r} requested but torch sees no CUDA device")
    dataset = instantiate("dataset", cfg.dataset)
    data = dataset.load()
    space_config = to_container(cfg.space)
    space = instantiate_space(cfg.space, data, config_dirs)
    profiler = build_profiler(cfg.profiler)
    image_size = profiler.settings().get("image_size")
    if image_size and image_size != data.image_size:  # the deployment resolution must fit the space
        try:
            instantiate_space(cfg.space, data, config_dirs, image_size=image_size)
        except UserError as e:
            raise UserError(f"profiler.image_size: {image_size} does not fit {space.name}: {e}") from None
    given = instantiate("supernet", cfg.supernet)
    auto = auto_augmentation(data)
    recipe = resolve_augmentation(given, auto)  # "auto" never reaches the cache key or the study
    gpus = torch.cuda.device_count()
    if recipe.devices > 1 and resolve_device(cfg.device).type == "cuda" and gpus < recipe.devices:
        raise UserError(
            f"supernet.devices: {recipe.devices} processes, one per GPU, but {gpus} GPU(s) are visible"
        )
    split = {"val_fraction": dataset.val_fraction, "seed": cfg.seed}
    train_idx, val_idx = data.split(**split)
    objectives = list(cfg.objectives)
    accuracy = check_accuracy(cfg, profiler)
    identity = {
        "space": space_config,
        "dataset": data.name,
        "data_fingerprint": data.fingerprint(),
        "split": split,
        "supernet_key": supernet_key(space_config, data, split, recipe),
        "objectives": objectives,
        "profiler": {"name": profiler.name, "unit": profiler.unit, "settings": profiler.settings()},
        "hardware": hardware_for(profiler)[0],
        "hardware_info": hardware_for(profiler)[1] or fingerprint(),  # a target's, for profiler=remote
    } | ({"accuracy": accuracy} if accuracy != "float" else {})
    calibrate(profiler, data, train_idx, cfg.seed)  # a quantizing profiler's calibration images
    # The sampler and executor are built for real later (the sampler once the study is open).
    instantiate("sampler", cfg.sampler, seed=cfg.seed)
    instantiate("executor", cfg.executor)
    return Setup(
        cfg=cfg,
        space=space,
        space_config=space_config,
        data=data,
        train_idx=train_idx,
        val_idx=val_idx,
        split=split,
        recipe=recipe,
        profiler=profiler,
        study_name=cfg.study_name or f"{space.name}-{data.name}",
        objectives=objectives,
        accuracy=accuracy,
        identity=identity,
        config_dirs=list(config_dirs),
        augmentation={
            "auto": auto.to_dict(),
            "supernet": {"flip": recipe.flip, "translate": recipe.translate},
            "line": describe_augmentation("supernet", given, recipe, auto),
        },
    )


def check_accuracy(cfg: DictConfig, profiler: LatencyProfiler) -> str:
    """What the accuracy objective scores (key ``accuracy``): int8 only with a profiler that
    measures an int8 deployment and an accuracy objective to score."""
    accuracy = cfg.get("accuracy", "float")
    if accuracy == "float":
        return accuracy
    if quantization_of(profiler) != accuracy:
        raise UserError(
            f"accuracy: {accuracy} scores the {accuracy} model the profiler measures; give a profiler "
            f"that quantizes: profiler=onnxruntime profiler.quantize={accuracy}"
        )
    if "accuracy" not in cfg.objectives:
        raise UserError(
            f"accuracy: {accuracy} chooses what the accuracy objective scores, but objectives has none"
        )
    return accuracy


def worker_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config for worker processes: paths made absolute (a worker may start
    elsewhere), no progress bars of their own."""
    config = to_container(cfg)
    path = sqlite_path(cfg.storage)
    if path is not None:
        config["storage"] = (
            make_url(cfg.storage).set(database=str(path.resolve())).render_as_string(hide_password=False)
        )
    config["cache_dir"] = str(Path(cfg.cache_dir).expanduser().resolve())
    config["progress"] = False
    return config

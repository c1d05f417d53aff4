"""``nas export``: a study's trial as ``model.onnx`` + ``arch.yaml``, checked against torch."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from optuna.trial import FrozenTrial

from infra.errors import UserError
from infra.storage import sqlite_path
from latency_models.onnx_io import to_onnx
from latency_models.onnxruntime import OnnxRuntimeProfiler
from nas.checkpoint import load_checkpoint
from nas.config import check_writable
from nas.quantized import (
    INT8_FILE,
    MIN_AGREEMENT,
    export_calibration_count,
    export_int8,
    study_split,
)
from nas.records import STUDY_ATTR
from nas.schema import locate
from nas.study import completed, latency, load_existing_study, reading_storage, top1, trial_arch
from search_spaces.base import SearchSpace

TOLERANCE = 1e-4


def inherited_model(info: dict[str, Any], study_name: str, chosen: FrozenTrial) -> torch.nn.Module:
    """The trial's architecture with its weights from the study's trained supernet (CPU)."""
    arch = trial_arch(chosen)
    supernet_path = Path(info.get("supernet_path", ""))
    if not supernet_path.is_file():
        raise UserError(
            f"supernet checkpoint {str(supernet_path)!r} of study {study_name!r} is missing; "
            "rerun the study's nas search command to rebuild it"
        )
    # The stored params must rebuild the stored architecture: guards against a changed space.
    sizes = {k: getattr(arch, k) for k in ("image_size", "in_channels", "num_classes")}
    space = stored_space(info, study_name, **sizes)
    if space.from_params(chosen.params) != arch:
        raise UserError(f"trial {chosen.number}: its params no longer rebuild its architecture")
    supernet = space.make_supernet()
    rebuild = "delete it and rerun the study's nas search command to rebuild it"
    supernet.load_state_dict(load_checkpoint(supernet_path, "cpu", keys=("model",), rebuild=rebuild)["model"])
    return supernet.extract(arch)


def stored_space(info: dict[str, Any], study_name: str, **sizes: int) -> SearchSpace:
    """The study's search space, built from the config node stored with it (``info["space"]``)
    and ``sizes`` (image_size, in_channels, num_classes). The study database may be shared, so
    the node is checked first (check_stored_space): building it runs no code but a space's."""
    from hydra.utils import instantiate

    node = info.get("space")
    check_stored_space(node, study_name)
    return instantiate(node, **sizes)


def check_stored_space(node: Any, study_name: str) -> None:
    """A UserError naming the study and the key unless ``node`` builds a SearchSpace subclass
    (its ``_target_``, resolved without calling anything) from plain values: no value anywhere
    inside it names another object to build (a nested ``_target_``)."""
    refused = "refusing to build it (was the study database changed?); rerun nas search in a new study"
    if not isinstance(node, dict):
        raise UserError(f"study {study_name!r}: its stored space is not a config node; {refused}")
    path = node.get("_target_")
    try:
        target = locate(path) if isinstance(path, str) else None
    except Exception:  # noqa: BLE001 - any import failure of a stored name
        target = None
    if not (isinstance(target, type) and issubclass(target, SearchSpace)):
        raise UserError(
            f"study {study_name!r}: its stored space._target_ {path!r} is not a search space class "
            f"(a subclass of search_spaces.base.SearchSpace); {refused}"
        )
    nested = _nested_target(node, "space")
    if nested is not None:
        raise UserError(
            f"study {study_name!r}: its stored {nested} names an object to build, where a space "
            f"holds plain values only; {refused}"
        )


def _nested_target(value: Any, key: str, top: bool = True) -> str | None:
    """The dotted key of the first ``_target_`` inside ``value`` (below its top level), or None."""
    if isinstance(value, dict):
        if not top and "_target_" in value:
            return f"{key}._target_"
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        found = _nested_target(v, f"{key}.{k}", top=False)
        if found is not None:
            return found
    return None


def choose_trial(study, trial: int | None, latency_budget_ms: float | None) -> FrozenTrial:

    done = completed(study)
    if not done:
        raise UserError(f"study {study.study_name!r} has no completed trials; run nas search first")
    if (trial is None) == (latency_budget_ms is None):
        raise UserError("export: give exactly one of trial=N or latency_budget_ms=X")
    if trial is not None:
        match = [t for t in done if t.number == trial]
        if not match:
            raise UserError(f"trial: no completed trial {trial} in study {study.study_name!r}")
        return match[0]
    unit = done[0].user_attrs.get("latency", {}).get("unit", "ms")
    if unit != "ms":
        raise UserError(
            f"latency_budget_ms: study {study.study_name!r} ranks by a proxy in {unit}, not by "
            "measured latency; choose a trial with trial=N"
        )
    within = [t for t in done if latency(t) <= latency_budget_ms]
    if not within:
        fastest = min(done, key=latency)
        raise UserError(
            f"latency_budget_ms: no trial is within {latency_budget_ms} ms; the fastest is trial "
            f"{fastest.number} at {latency(fastest):.4g} ms (top-1 {top1(fastest):.2f} %)"
        )
    return max(within, key=lambda t: (top1(t), -latency(t)))


MANIFEST = "export.json"  # marks a folder as a nas export: what it holds and where it came from
EXPORT_FILES = ("model.onnx", "arch.yaml", "model.pt", INT8_FILE, MANIFEST)


def previous_export(folder: Path) -> dict[str, Any] | None:
    """The manifest of ``folder`` when it holds a nas export and nothing else, else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        names = {p.name for p in folder.iterdir()}
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("nas_export") != 1:
        return None
    return manifest if names <= set(EXPORT_FILES) and all(p.is_file() for p in folder.iterdir()) else None


def check_out_dir(out_dir: Path, overwrite: bool, protected: dict[str, Path]) -> None:
    """Refuse, before anything is written, an ``out_dir`` whose replacement could lose anything:
    the working directory or an ancestor of it, a folder holding one of the ``protected`` paths
    (study database, cache), a file or link, or a folder holding anything but a previous export
    (which only ``overwrite`` replaces)."""

    shown = str(out_dir)
    if out_dir.is_symlink():
        raise UserError(f"out_dir: {shown!r} is a symbolic link; give a folder")
    target = out_dir.resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        what = "the working directory" if target == cwd else "an ancestor of the working directory"
        raise UserError(f"out_dir: {shown!r} is {what}; give a new folder, e.g. out_dir=export/mymodel")
    for name, path in protected.items():
        path = path.resolve()
        if path == target or target in path.parents:
            raise UserError(f"out_dir: {shown!r} holds the {name} {str(path)!r}; give a new folder")
    check_writable("out_dir", target.parent)
    if not target.exists():
        return
    if not target.is_dir():
        raise UserError(f"out_dir: {shown!r} is a file; give a new folder")
    entries = sorted(p.name for p in target.iterdir())
    if not entries:
        return
    manifest = previous_export(target)
    if manifest is None:
        listed = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise UserError(
            f"out_dir: {shown!r} holds files that are not a nas export ({listed}); nothing is ever "
            "replaced but a previous export: give a new or empty folder"
        )
    if not overwrite:
        raise UserError(
            f"out_dir: {shown!r} holds a previous export (trial {manifest.get('trial')} of study "
            f"{manifest.get('study')!r}); overwrite=true replaces it"
        )


def _sidecar(target: Path, kind: str) -> Path:
    """A hidden folder beside ``target`` for this process: ``kind`` is 'new' (being written) or
    'old' (a previous export being replaced)."""
    return target.parent / f".{target.name}.nas-{kind}-{os.getpid()}"


def _clean_sidecars(target: Path) -> None:
    """Folders left beside ``target`` by an export that was killed: a half-written one is
    removed, a previous export moved aside is put back (if nothing replaced it)."""
    for path in target.parent.glob(f".{target.name}.nas-*-*"):
        kind, _, pid = path.name.rsplit(".nas-", 1)[-1].partition("-")
        if kind not in ("new", "old") or not pid.isdigit() or _alive(int(pid)) or not path.is_dir():
            continue
        if any(p.name not in EXPORT_FILES for p in path.iterdir()):
            continue  # not ours after all: never delete what we did not write
        if kind == "old" and not target.exists():
            path.rename(target)
        else:
            shutil.rmtree(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _move_into_place(staging: Path, target: Path) -> None:
    """``staging`` becomes ``target``: renamed over a missing or empty folder (atomic), or, for a
    previous export, swapped with it (moved aside, renamed, then removed)."""
    if target.exists() and any(target.iterdir()):
        aside = _sidecar(target, "old")
        target.rename(aside)
        staging.rename(target)
        shutil.rmtree(aside)
    else:
        staging.rename(target)


def run_export(cfg, console) -> int:

    with reading_storage(cfg.storage) as storage:
        study = load_existing_study(storage, cfg.study_name)
        chosen = choose_trial(study, cfg.trial, cfg.latency_budget_ms)
        info: dict[str, Any] = study.user_attrs.get(STUDY_ATTR, {})
        study_name = study.study_name
    arch = trial_arch(chosen)
    supernet_path = Path(info.get("supernet_path", ""))
    out_dir = Path(cfg.out_dir or f"export/{study_name}-trial{chosen.number}")
    database = sqlite_path(cfg.storage)
    protected = {"study database": database} if database is not None else {}
    protected |= {"cache folder": Path(cfg.cache_dir), "supernet": supernet_path}
    check_out_dir(out_dir, cfg.overwrite, protected)
    model = inherited_model(info, study_name, chosen)
    calibration = export_calibration_count(info, cfg.get("profiler"))  # 0: no int8 model
    split = study_split(cfg, info, study_name) if calibration else None  # checked before writing

    # Written beside the target in a hidden folder, then moved into place: an interrupted
    # export leaves no partial folder, and nothing but a previous export is ever replaced.
    target = out_dir.absolute()
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_sidecars(target)
    staging = _sidecar(target, "new")
    staging.mkdir()
    try:
        onnx_path = staging / "model.onnx"
        to_onnx(model, arch.input_shape, onnx_path)
        onnx.checker.check_model(str(onnx_path), full_check=True)
        session = OnnxRuntimeProfiler().session(onnx_path.read_bytes())
        images = torch.rand(8, *arch.input_shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected = model(images).numpy()
        (got,) = session.run(None, {"images": images.numpy()})
        max_diff = float(np.abs(got - expected).max())
        if max_diff > TOLERANCE:
            console.print(f"[red]ONNX Runtime and torch differ by {max_diff:.2e} > {TOLERANCE:g}[/]")
            return 1
        int8 = None
        if split is not None:
            seed = (info.get("split") or {}).get("seed", cfg.seed)
            int8_bytes, int8, check = export_int8(onnx_path.read_bytes(), split, calibration, seed)
            (staging / INT8_FILE).write_bytes(int8_bytes)
            onnx.checker.check_model(str(staging / INT8_FILE), full_check=True)
            if not check.passed:
                console.print(
                    f"[red]int8 model: top-1 agrees with the float model on {check.agreement:.1%} of "
                    f"{check.images} validation images < {MIN_AGREEMENT:.0%}[/]"
                )
                return 1
        header = (
            f"# nas export of study {study_name!r}, trial {chosen.number}: "
            f"validation top-1 {top1(chosen):.2f} %, latency {latency(chosen):.4g} "
            f"{chosen.user_attrs['latency']['unit']} ({chosen.user_attrs['profiler']['name']})\n"
            "# input 'images': float32 (batch, C, H, W) in [0, 1]; output 'logits'\n"
        )
        (staging / "arch.yaml").write_text(header + arch.to_yaml())
        torch.save(model.state_dict(), staging / "model.pt")  # for nas.timm_models (timm.create_model)
        manifest = {
            "nas_export": 1,
            "study": study_name,
            "trial": chosen.number,
            "storage": cfg.storage if database is None else f"sqlite:///{database.resolve()}",
            "arch_key": arch.key(),
            "top1": top1(chosen),
            "latency": chosen.user_attrs["latency"],
            "profiler": chosen.user_attrs["profiler"],
            "max_abs_diff_ort_vs_torch": max_diff,
            "files": ["model.onnx", "arch.yaml", "model.pt"] + ([INT8_FILE] if int8 else []),
        } | ({"int8": int8 | {"trial": chosen.user_attrs.get("int8")}} if int8 else {})
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _move_into_place(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
        for folder in created if not target.exists() else ():  # folders made for a failed export
            with contextlib.suppress(OSError):
                folder.rmdir()
    console.print(
        f"Exported trial {chosen.number} ({arch.summary()}; top-1 {top1(chosen):.2f} %, "
        f"{latency(chosen):.4g} {chosen.user_attrs['latency']['unit']}) to {out_dir}/model.onnx "
        f"and arch.yaml; onnx.checker passed; ONNX Runtime vs torch max abs diff {max_diff:.2e}"
    )
    if int8:
        parity = int8["parity"]
        console.print(
            f"int8 model {out_dir}/{INT8_FILE} ({int8['calibration']}): top-1 agrees with the float "
            f"model on {parity['top1_agreement']:.1%} of {parity['images']} validation images (at least "
            f"{MIN_AGREEMENT:.0%} required), max abs logit diff {parity['max_abs_logit_diff']:.3g}; top-1 on "
            f"them {parity['float_top1']:.2f} % float, {parity['int8_top1']:.2f} % int8"
        )
    return 0

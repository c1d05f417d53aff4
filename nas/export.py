"""``nas export``: a study's trial as ``model.onnx`` + ``arch.yaml``, checked against torch."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from optuna.trial import FrozenTrial

from nas.errors import UserError

TOLERANCE = 1e-4


def choose_trial(study, trial: int | None, latency_budget_ms: float | None) -> FrozenTrial:
    from nas.study import completed, latency, top1

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


def run_export(cfg, console) -> int:
    import onnx

    from latency_models.onnxruntime import OnnxRuntimeProfiler
    from nas.onnx_io import to_onnx
    from nas.study import STUDY_ATTR, latency, load_existing_study, open_storage, top1, trial_arch

    study = load_existing_study(open_storage(cfg.storage), cfg.study_name)
    chosen = choose_trial(study, cfg.trial, cfg.latency_budget_ms)
    arch = trial_arch(chosen)
    info: dict[str, Any] = study.user_attrs.get(STUDY_ATTR, {})
    supernet_path = Path(info.get("supernet_path", ""))
    if not supernet_path.is_file():
        raise UserError(
            f"supernet checkpoint {str(supernet_path)!r} of study {study.study_name!r} is missing; "
            "rerun the study's nas search command to rebuild it"
        )
    # The stored params must rebuild the stored architecture: guards against a changed space.
    from hydra.utils import instantiate

    space = instantiate(
        info["space"], image_size=arch.image_size, in_channels=arch.in_channels, num_classes=arch.num_classes
    )
    if space.from_params(chosen.params) != arch:
        raise UserError(f"trial {chosen.number}: its params no longer rebuild its architecture")
    supernet = space.make_supernet()
    supernet.load_state_dict(torch.load(supernet_path, map_location="cpu", weights_only=False)["model"])
    model = supernet.extract(arch)

    out_dir = Path(cfg.out_dir or f"export/{study.study_name}-trial{chosen.number}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir.parent))
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
        header = (
            f"# nas export of study {study.study_name!r}, trial {chosen.number}: "
            f"validation top-1 {top1(chosen):.2f} %, latency {latency(chosen):.4g} "
            f"{chosen.user_attrs['latency']['unit']} ({chosen.user_attrs['profiler']['name']})\n"
            "# input 'images': float32 (batch, C, H, W) in [0, 1]; output 'logits'\n"
        )
        (staging / "arch.yaml").write_text(header + arch.to_yaml())
        if max_diff > TOLERANCE:
            console.print(f"[red]ONNX Runtime and torch differ by {max_diff:.2e} > {TOLERANCE:g}[/]")
            return 1
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.chmod(0o755)  # mkdtemp makes it private
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    console.print(
        f"Exported trial {chosen.number} ({arch.summary()}; top-1 {top1(chosen):.2f} %, "
        f"{latency(chosen):.4g} {chosen.user_attrs['latency']['unit']}) to {out_dir}/model.onnx "
        f"and arch.yaml; onnx.checker passed; ONNX Runtime vs torch max abs diff {max_diff:.2e}"
    )
    return 0

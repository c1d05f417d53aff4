"""``nas latency fit|eval`` (the learned predictor) and ``nas profile`` (one architecture).

Every measurement goes through the latency table in ``storage`` (latency_models.cache): a rerun,
another study or another process never measures the same thing twice on the same hardware.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import matplotlib
import yaml
from omegaconf import DictConfig
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.errors import UserError
from infra.files import save_figure, write_csv
from infra.storage import check_storage_url, sqlite_path
from latency_models import LatencyProfiler, profiler_key
from latency_models._base import can_time_modules, contract_gaps, hardware_for, measure_arch
from latency_models.cache import LatencyCache
from latency_models.hardware import fingerprint, fingerprint_id
from latency_models.predictor import (
    Predictor,
    fill_table,
    find_predictor,
    fit_samples,
    held_out_errors,
    predictor_file,
    space_blocks,
    summarise,
    unique_samples,
)
from nas.config import check_writable, group_options, instantiate, instantiate_space
from nas.study import load_existing_study, reading_storage, trial_arch
from search_spaces.arch import ArchError, arch_from_dict
from search_spaces.base import SearchSpace

HELD_OUT_SEED_OFFSET = 7919  # eval samples with another seed than fit, so its members are fresh


def _space(cfg: DictConfig, config_dirs: list[str]) -> SearchSpace:
    if "space" not in cfg:
        valid = ", ".join(group_options("space", config_dirs))
        raise UserError(f"space: none given; add +space=NAME (valid: {valid})")
    data = instantiate("dataset", cfg.dataset).load()
    return instantiate_space(cfg.space, data, config_dirs)


def build_profiler(node: DictConfig) -> LatencyProfiler:
    """The profiler of conf node ``node``, checked against the LatencyProfiler contract (a
    ``_target_`` of the user's may name any class)."""
    profiler = instantiate("profiler", node)
    missing = contract_gaps(profiler)
    if missing:
        what = f"{type(profiler).__module__}.{type(profiler).__qualname__}"
        raise UserError(f"profiler: {what} is not a latency profiler (it has no {', '.join(missing)})")
    return profiler


def _measuring_profiler(cfg: DictConfig) -> LatencyProfiler:
    profiler = build_profiler(cfg.profiler)
    if not can_time_modules(profiler):
        raise UserError(
            f"profiler: {profiler.name!r} does not measure time (or cannot time single blocks); use a "
            "measuring profiler: onnxruntime, torch or a plugin with measured = True and measure_module()"
        )
    return profiler


def _cache(storage: str, create: bool = True) -> LatencyCache | None:
    """The latency table in ``storage``; None when ``create`` is false and there is no
    database yet (a reading command never creates one)."""
    check_storage_url(storage, writing=create)
    path = sqlite_path(storage)
    if not create and path is not None and not path.is_file():
        return None
    try:
        return LatencyCache(storage)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"storage: cannot open {storage!r}: {first}") from None


def predictor_dir(cache_dir: str) -> Path:
    return Path(cache_dir) / "predictors"


def _progress(cfg: DictConfig, console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not cfg.progress,
    )


def run_fit(cfg: DictConfig, config_dirs: list[str], console) -> int:
    space = _space(cfg, config_dirs)
    profiler = _measuring_profiler(cfg)
    if hardware_for(profiler)[0] != fingerprint_id():  # e.g. profiler=remote: a target device's
        raise UserError(
            f"profiler: {profiler.name!r} measures on other hardware ({hardware_for(profiler)[0]}); "
            "a predictor is fitted for this machine's"
        )
    if cfg.n_samples < 2:
        raise UserError(f"n_samples: expected a value >= 2 to fit a calibration, got {cfg.n_samples}")
    n = cfg.n_samples
    folder = predictor_dir(cfg.cache_dir)
    path = Path(cfg.predictor) if cfg.predictor else predictor_file(folder, space.name, profiler)
    check_writable("predictor", path.parent)
    cache = _cache(cfg.storage)
    described = {"name": profiler.name, "unit": profiler.unit, "settings": profiler.settings()}
    predictor = Predictor(described, fingerprint(), fingerprint_id(), space=space.name)
    if path.is_file():  # resume: keep what an interrupted fit measured
        try:
            earlier = Predictor.load(path)
        except (ValueError, KeyError):
            earlier = None
        if earlier and earlier.profiler == described and earlier.hardware_id == predictor.hardware_id:
            predictor.table = earlier.table
    console.print(
        f"Fitting a latency predictor for space [bold]{space.name}[/] with profiler {profiler.name} "
        f"{profiler_key(profiler)} on {fingerprint()['cpu']} ({fingerprint_id()})"
    )
    start = time.perf_counter()
    archs = unique_samples(space, n, seed=cfg.seed)
    blocks = space_blocks(space, seed=cfg.seed)
    with _progress(cfg, console) as bar:
        task = bar.add_task("samples", total=len(archs))
        fit_samples(predictor, profiler, archs, cache, lambda: bar.advance(task), save_to=path)
        missing = [b for b in blocks if b.key() not in predictor.table]
        task = bar.add_task("blocks of the space", total=len(missing))
        fill_table(predictor, profiler, missing, cache, on_block=lambda: bar.advance(task))
    cache.close()
    predictor.calibrate()
    predictor.save(path)
    errors = [predictor.predict(arch_from_dict(a)) / m - 1 for a, m in predictor.samples]
    within = sum(abs(e) <= 0.1 for e in errors) / len(errors)
    console.print(
        f"Fitted on {len(predictor.samples)} measured architectures and {len(predictor.table)} blocks "
        f"in {time.perf_counter() - start:.0f} s ({cache.misses} measurements, {cache.hits} from the "
        f"latency table); on its own samples {within:.1%} within ±10 %.\n"
        f"Saved {path}\nCheck it on fresh architectures: nas latency eval +space={space.name} "
        f"predictor={path}"
    )
    return 0


def _load_predictor(cfg: DictConfig, space: SearchSpace) -> tuple[Predictor, Path]:
    try:
        path = (
            Path(cfg.predictor) if cfg.predictor else find_predictor(predictor_dir(cfg.cache_dir), space.name)
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    if not path.is_file():
        raise UserError(f"predictor: {str(path)!r} does not exist; run nas latency fit first")
    try:
        predictor = Predictor.load(path)
    except (ValueError, KeyError) as e:
        raise UserError(f"predictor: {e}") from None
    if predictor.hardware_id != fingerprint_id():
        raise UserError(
            f"predictor: {path} was fitted on other hardware ({predictor.hardware.get('cpu')}, "
            f"{predictor.hardware_id}); fit one here"
        )
    return predictor, path


def run_eval(cfg: DictConfig, config_dirs: list[str], console) -> int:
    space = _space(cfg, config_dirs)
    predictor, path = _load_predictor(cfg, space)
    n = cfg.n_samples
    try:
        profiler = predictor.measuring_profiler()
    except (KeyError, ValueError) as e:
        raise UserError(f"predictor: its profiler cannot be built here: {e}") from None
    cache = _cache(cfg.storage)
    fitted = {arch_from_dict(a).key() for a, _ in predictor.samples}
    archs = unique_samples(space, n, seed=cfg.seed + HELD_OUT_SEED_OFFSET, exclude=fitted)
    with _progress(cfg, console) as bar:
        task = bar.add_task("held-out architectures", total=len(archs))
        rows = held_out_errors(predictor, profiler, archs, cache, lambda: bar.advance(task))
    cache.close()
    if any(r["new_blocks"] for r in rows):
        predictor.save(path)  # the table learnt blocks it lacked
    stats = summarise(rows)
    csv_path, png_path = _write_eval(rows, path, stats["within_10pct"])
    table = Table(title=f"Predictor {path.name} on {len(rows)} held-out architectures of {space.name}")
    for column in ("within ±10 %", "MAPE", "RMSE", "worst error", "one prediction", "one measurement"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{stats['within_10pct']:.1%}",
        f"{stats['mape_pct']:.2f} %",
        f"{stats['rmse_ms']:.4f} ms",
        f"{stats['worst_error']:+.1%}",
        f"{stats['predict_us']:.0f} µs",
        "(all from the table)" if stats["measure_s"] != stats["measure_s"] else f"{stats['measure_s']:.2f} s",
    )
    console.print(table)
    console.print(f"Per-architecture figures: {csv_path}; plot: {png_path}")
    return 0


def _write_eval(rows: list[dict[str, Any]], path: Path, within: float) -> tuple[Path, Path]:
    """Per-architecture figures as CSV, and predicted vs measured as a plot, beside the predictor."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    csv_path = write_csv(path.with_name(path.stem + "_eval.csv"), rows)
    measured = [r["measured_ms"] for r in rows]
    predicted = [r["predicted_ms"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    top = max(measured + predicted) * 1.05
    ax.fill_between([0, top], [0, top * 0.9], [0, top * 1.1], color="tab:green", alpha=0.15, label="±10 %")
    ax.plot([0, top], [0, top], color="tab:green", lw=1)
    ax.scatter(measured, predicted, s=10)
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="measured latency (ms)", ylabel="predicted latency (ms)")
    ax.set_title(f"{path.stem}: {within:.1%} within ±10 %", fontsize=9)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return csv_path, save_figure(fig, path.with_name(path.stem + "_eval.png"))


def run_profile(cfg: DictConfig, config_dirs: list[str], console) -> int:
    """Measure one architecture (arch=FILE.yaml, or trial=N of the study) and print statistics."""
    if cfg.arch and cfg.trial is not None:
        raise UserError("arch: give either arch=FILE or trial=N, not both")
    if cfg.arch:
        source = Path(cfg.arch)
        if not source.is_file():
            raise UserError(f"arch: {str(source)!r} does not exist")
        try:
            arch = arch_from_dict(yaml.safe_load(source.read_text()))
        except (ArchError, TypeError, AttributeError, yaml.YAMLError) as e:
            raise UserError(f"arch: {source} is not an architecture: {str(e).splitlines()[0]}") from None
    elif cfg.trial is not None:
        with reading_storage(cfg.storage) as storage:
            study = load_existing_study(storage, cfg.study_name)
            numbers = {t.number: t for t in study.trials}
        if cfg.trial not in numbers or "arch" not in numbers[cfg.trial].user_attrs:
            raise UserError(f"trial: study {study.study_name!r} has no scored trial {cfg.trial}")
        arch = trial_arch(numbers[cfg.trial])
        source = f"trial {cfg.trial} of {study.study_name}"
    else:
        raise UserError("arch: say what to profile: arch=FILE.yaml (from nas export) or trial=N")
    profiler = build_profiler(cfg.profiler)
    cache = _cache(cfg.storage, create=False)  # measurements go to an existing latency table
    start = time.perf_counter()
    try:
        result, hit = measure_arch(profiler, arch, None, cache)
    except ValueError as e:
        raise UserError(str(e)) from None
    finally:
        if cache is not None:
            cache.close()
    seconds = time.perf_counter() - start
    hardware_id, hardware = hardware_for(profiler)
    table = Table(title=f"{profiler.name} latency of {arch.summary()} ({source})", show_header=False)
    table.add_column("statistic")
    table.add_column("value", justify="right")
    u = result.unit
    for name, value in (
        ("median", f"{result.median:.4f} {u}"),
        ("p90", f"{result.p90:.4f} {u}"),
        ("mean ± std", f"{result.mean:.4f} ± {result.std:.4f} {u}"),
        ("per-call CV", f"{result.cv:.2%}"),
        ("round medians' spread", "-" if result.spread is None else f"{result.spread:.2%}"),
        ("runs / warm-up", f"{result.n_runs} / {result.n_warmup}"),
        ("batch, input", f"{result.batch_size} x {tuple(result.input_shape)}"),
        ("hardware", f"{hardware_id} {hardware.get('gpu') or hardware.get('cpu', '')}"),
        ("settings", str(profiler.settings())),
        ("source", f"latency table in {cfg.storage}" if hit else f"measured now ({seconds:.1f} s)"),
        ("latency table", "not used (no database yet)" if cache is None else str(cfg.storage)),
    ):
        table.add_row(name, value)
    console.print(table)
    return 0

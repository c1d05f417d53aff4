"""``nas latency fit|eval`` (the learned predictor) and ``nas profile`` (one architecture).

Every measurement goes through the latency table in ``storage`` (latency_models.cache): a rerun,
another study or another process never measures the same thing twice on the same hardware.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nas.config import instantiate, instantiate_space
from nas.errors import UserError


def _space(cfg: DictConfig, config_dirs) -> Any:
    from nas.config import group_options

    if "space" not in cfg:
        valid = ", ".join(group_options("space", config_dirs))
        raise UserError(f"space: none given; add +space=NAME (valid: {valid})")
    data = instantiate("dataset", cfg.dataset).load()
    return instantiate_space(cfg.space, data, config_dirs)


def _measuring_profiler(cfg: DictConfig) -> Any:
    profiler = instantiate("profiler", cfg.profiler)
    if not getattr(profiler, "measured", False):
        raise UserError(
            f"profiler: {profiler.name!r} does not measure time; use a measuring profiler "
            "(onnxruntime, torch or a plugin with measured = True)"
        )
    if not hasattr(profiler, "measure_module"):
        raise UserError(f"profiler: {profiler.name!r} has no measure_module(); the predictor times blocks")
    return profiler


def _cache(storage: str, create: bool = True):
    """The latency table in ``storage``; None when ``create`` is false and there is no
    database yet (a reading command never creates one)."""
    from latency_models.cache import LatencyCache
    from nas.study import check_storage_url, sqlite_path

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


def default_predictor_path(cache_dir: str, space_name: str, profiler) -> Path:
    """One file per space, profiler settings and hardware."""
    from latency_models import profiler_key
    from nas.hardware import fingerprint_id

    settings = hashlib.sha1(profiler_key(profiler).encode()).hexdigest()[:8]
    return predictor_dir(cache_dir) / f"{space_name}-{profiler.name}-{settings}-{fingerprint_id()}.json"


def find_predictor(cache_dir: str, space_name: str) -> Path:
    """The predictor fitted for ``space_name`` on this hardware, when there is exactly one."""
    from nas.hardware import fingerprint_id

    found = sorted(predictor_dir(cache_dir).glob(f"{space_name}-*-{fingerprint_id()}.json"))
    if not found:
        raise UserError(
            f"profiler.path: no predictor for space {space_name!r} on this hardware in "
            f"{predictor_dir(cache_dir)}; run: nas latency fit +space={space_name}"
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise UserError(f"profiler.path: several predictors for {space_name!r} ({names}); choose one")
    return found[0]


def _check_n_samples(cfg: DictConfig, least: int) -> int:
    n = cfg.n_samples
    if not isinstance(n, int) or isinstance(n, bool) or n < least:
        raise UserError(f"n_samples: expected an integer >= {least}, got {n!r}")
    return n


def _progress(cfg: DictConfig, console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not cfg.progress,
    )


def run_fit(cfg: DictConfig, config_dirs, console) -> int:
    from latency_models import profiler_key
    from latency_models.predictor import Predictor, fill_table, fit_samples, space_blocks, unique_samples
    from nas.hardware import fingerprint, fingerprint_id

    space = _space(cfg, config_dirs)
    profiler = _measuring_profiler(cfg)
    n = _check_n_samples(cfg, 2)
    path = (
        Path(cfg.predictor) if cfg.predictor else default_predictor_path(cfg.cache_dir, space.name, profiler)
    )
    from nas.config import check_writable

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
    errors = [predictor.predict(arch_of(a)) / m - 1 for a, m in predictor.samples]
    within = sum(abs(e) <= 0.1 for e in errors) / len(errors)
    console.print(
        f"Fitted on {len(predictor.samples)} measured architectures and {len(predictor.table)} blocks "
        f"in {time.perf_counter() - start:.0f} s ({cache.misses} measurements, {cache.hits} from the "
        f"latency table); on its own samples {within:.1%} within ±10 %.\n"
        f"Saved {path}\nCheck it on fresh architectures: nas latency eval +space={space.name} "
        f"predictor={path}"
    )
    return 0


def arch_of(data: dict[str, Any]):
    from nas.arch import arch_from_dict

    return arch_from_dict(data)


def _load_predictor(cfg: DictConfig, space) -> tuple[Any, Path]:
    from latency_models.predictor import Predictor
    from nas.hardware import fingerprint_id

    path = Path(cfg.predictor) if cfg.predictor else find_predictor(cfg.cache_dir, space.name)
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


def run_eval(cfg: DictConfig, config_dirs, console) -> int:
    from latency_models.predictor import held_out_errors, summarise, unique_samples

    space = _space(cfg, config_dirs)
    predictor, path = _load_predictor(cfg, space)
    n = _check_n_samples(cfg, 1)
    try:
        profiler = predictor.measuring_profiler()
    except (KeyError, ValueError) as e:
        raise UserError(f"predictor: its profiler cannot be built here: {e}") from None
    cache = _cache(cfg.storage)
    fitted = {arch_of(a).key() for a, _ in predictor.samples}
    archs = unique_samples(space, n, seed=cfg.seed + 7919, exclude=fitted)  # held out
    with _progress(cfg, console) as bar:
        task = bar.add_task("held-out architectures", total=len(archs))
        rows = held_out_errors(predictor, profiler, archs, cache, lambda: bar.advance(task))
    cache.close()
    if any(r["new_blocks"] for r in rows):
        predictor.save(path)  # the table learnt blocks it lacked
    stats = summarise(rows)
    csv_path, png_path = _write_eval(rows, path, stats["within_10pct"])
    from rich.table import Table

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
    import csv
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    csv_path = path.with_name(path.stem + "_eval.csv")
    tmp = csv_path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, csv_path)
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
    png_path = path.with_name(path.stem + "_eval.png")
    tmp_png = png_path.with_suffix(".tmp.png")
    fig.savefig(tmp_png, dpi=110)
    plt.close(fig)
    os.replace(tmp_png, png_path)
    return csv_path, png_path


def run_profile(cfg: DictConfig, config_dirs, console) -> int:
    """Measure one architecture (arch=FILE.yaml, or trial=N of the study) and print statistics."""
    from latency_models._base import measure_arch
    from latency_models.cache import hardware_for
    from nas.arch import ArchError, arch_from_dict

    if cfg.arch and cfg.trial is not None:
        raise UserError("arch: give either arch=FILE or trial=N, not both")
    if cfg.arch:
        source = Path(cfg.arch)
        if not source.is_file():
            raise UserError(f"arch: {str(source)!r} does not exist")
        import yaml

        try:
            arch = arch_from_dict(yaml.safe_load(source.read_text()))
        except (ArchError, TypeError, AttributeError, yaml.YAMLError) as e:
            raise UserError(f"arch: {source} is not an architecture: {str(e).splitlines()[0]}") from None
    elif cfg.trial is not None:
        from nas.study import load_existing_study, reading_storage, trial_arch

        with reading_storage(cfg.storage) as storage:
            study = load_existing_study(storage, cfg.study_name)
            numbers = {t.number: t for t in study.trials}
        if cfg.trial not in numbers or "arch" not in numbers[cfg.trial].user_attrs:
            raise UserError(f"trial: study {study.study_name!r} has no scored trial {cfg.trial}")
        arch = trial_arch(numbers[cfg.trial])
        source = f"trial {cfg.trial} of {study.study_name}"
    else:
        raise UserError("arch: say what to profile: arch=FILE.yaml (from nas export) or trial=N")
    if cfg.profiler.get("name") == "predictor" and not cfg.profiler.get("path"):
        cfg.profiler.path = str(find_predictor(cfg.cache_dir, arch.space))
    profiler = instantiate("profiler", cfg.profiler)
    cache = _cache(cfg.storage, create=False)  # measurements go to an existing latency table
    if hasattr(profiler, "cache"):
        profiler.cache = cache
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
    from rich.table import Table

    table = Table(title=f"{profiler.name} latency of {arch.summary()} ({source})", show_header=False)
    table.add_column("statistic")
    table.add_column("value", justify="right")
    u = result.unit
    for name, value in (
        ("median", f"{result.median:.4f} {u}"),
        ("p90", f"{result.p90:.4f} {u}"),
        ("mean ± std", f"{result.mean:.4f} ± {result.std:.4f} {u}"),
        ("spread (CV)", f"{result.cv:.2%}"),
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

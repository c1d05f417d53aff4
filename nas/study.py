"""The Optuna study in SQL: opening it, what a trial records, the Pareto front and its files."""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from rich.table import Table

from infra.errors import UserError
from infra.files import save_figure, write_csv
from infra.locks import computing
from infra.storage import check_storage_url, create_engine, normalise_url, sqlite_path, tune_sqlite
from nas.optuna_internals import HeartbeatRDBStorage
from nas.records import STUDY_ATTR, TEST_ATTR, QuantizedAccuracy, TrialAttr, file_safe
from search_spaces.arch import Arch, arch_from_dict

# Objectives a study can optimise: name -> direction (values are read by objective_value).
OBJECTIVES = {
    "accuracy": "maximize",  # validation top-1 (%) with inherited weights
    "latency": "minimize",  # the profiler's median (ms, or the proxy's unit)
    "nonzero_params": "minimize",  # parameters that are not zero (DASS's sparsity-aware objective)
    "params": "minimize",
    "flops": "minimize",
}


ACCURACIES = ("float", "int8")  # what the accuracy objective scores (key ``accuracy``)


def objective_value(attrs: dict[str, Any], name: str) -> float:
    if name == "accuracy":
        return accuracy_of(attrs)
    if name == "latency":
        return attrs["latency"]["median"]
    return float(attrs[name])


def accuracy_of(attrs: dict[str, Any]) -> float:
    """The validation top-1 a trial is ranked by: its int8 model's where the study's accuracy is
    int8 (``accuracy=int8``: trial attribute ``accuracy``), else the float model's."""
    if attrs.get(TrialAttr.ACCURACY) == "int8":
        return attrs[TrialAttr.INT8]["top1"]
    return attrs[TrialAttr.TOP1]


def top1(trial: FrozenTrial) -> float:
    """The trial's validation top-1 as the study ranks it (accuracy_of)."""
    return accuracy_of(trial.user_attrs)


def latency(trial: FrozenTrial) -> float:
    return trial.user_attrs["latency"]["median"]


CREATE_ATTEMPTS = 5  # opening a new database while another process creates its tables


class LockedRDBStorage(HeartbeatRDBStorage):
    """An RDBStorage whose every call holds the machine-wide lock shared (``computing``): a search
    worker's Optuna bookkeeping (ask, tell, attributes, heartbeats, its polling) never runs
    beside a latency measurement on this machine."""


def _hold_computing(method):
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with computing():
            return method(self, *args, **kwargs)

    return locked


for _base in (optuna.storages.RDBStorage, HeartbeatRDBStorage):
    for _name, _method in vars(_base).items():
        if inspect.isfunction(_method) and not _name.startswith("__"):
            setattr(LockedRDBStorage, _name, _hold_computing(getattr(HeartbeatRDBStorage, _name)))


class LockedSampler(optuna.samplers.BaseSampler):
    """``sampler`` with each of its steps under the machine-wide shared lock, as LockedRDBStorage:
    a model-based sampler's work (TPE, GP) in another worker never runs beside a measurement."""

    def __init__(self, sampler: optuna.samplers.BaseSampler) -> None:
        self.sampler = sampler

    def __getattr__(self, name: str) -> Any:  # what a sampler has beyond the protocol
        return getattr(self.sampler, name)

    def __str__(self) -> str:
        return str(self.sampler)

    @_hold_computing
    def infer_relative_search_space(self, study, trial):
        return self.sampler.infer_relative_search_space(study, trial)

    @_hold_computing
    def sample_relative(self, study, trial, search_space):
        return self.sampler.sample_relative(study, trial, search_space)

    @_hold_computing
    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.sampler.sample_independent(study, trial, param_name, param_distribution)

    @_hold_computing
    def before_trial(self, study, trial) -> None:
        self.sampler.before_trial(study, trial)

    @_hold_computing
    def after_trial(self, study, trial, state, values) -> None:
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()


def open_storage(
    url: str, heartbeat_s: float = 10.0, locked: bool = False, tune: bool = True
) -> optuna.storages.RDBStorage:
    """The study storage at ``url`` (created if missing). A running trial beats every
    ``heartbeat_s``; one silent for 3x that (its process was killed) is failed by the next run
    and retried once with the same parameters (Optuna's RetryHeartbeatStaleTrialCallback).
    ``locked``: a LockedRDBStorage, for search workers. ``tune``: SQLite in WAL mode (a write;
    readers leave the file as it is)."""
    check_storage_url(url)
    url = normalise_url(url)
    kind = LockedRDBStorage if locked else HeartbeatRDBStorage
    for attempt in range(CREATE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = kind(
                    url,
                    heartbeat_interval=max(1, round(heartbeat_s)),
                    grace_period=max(2, round(3 * heartbeat_s)),
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                )
            if tune:
                tune_sqlite(storage.engine)
            return storage
        except (sa.exc.IntegrityError, sa.exc.OperationalError):
            # Another process creates the same tables right now (several workers or machines
            # starting on a new database): its tables are there a moment later.
            if attempt == CREATE_ATTEMPTS - 1:
                raise UserError(f"storage: cannot create the study tables in {url!r}") from None
            time.sleep(0.2 * (attempt + 1))
        except Exception as e:  # driver missing, server down, bad credentials, not a database
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"storage: cannot open {url!r}: {first}") from None
    raise AssertionError("unreachable")


@contextlib.contextmanager
def reading_storage(url: str) -> Iterator[optuna.storages.RDBStorage]:
    """The existing study storage at ``url``, for commands that only read it (export, profile,
    dashboard): never creates a database or a table, and closes its connections on exit (so an
    SQLite database in WAL mode keeps no side files)."""
    import sqlalchemy as sa

    check_storage_url(url)
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise UserError(f"storage: there is no database {str(path)!r} ({url}); run nas search first")
    engine = create_engine(url)
    try:
        has_studies = sa.inspect(engine).has_table("studies")
    except Exception as e:  # not a database, server down, bad credentials
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"storage: cannot read {url!r}: {first}") from None
    finally:
        engine.dispose()
    if not has_studies:
        raise UserError(f"storage: {url!r} holds no nas study; run nas search first")
    storage = open_storage(url, tune=False)
    try:
        yield storage
    finally:
        storage.engine.dispose()


def results_dir(url: str) -> Path:
    """Where result files go: next to an SQLite database, else the working directory."""
    path = sqlite_path(url)
    return path.resolve().parent if path is not None else Path.cwd()


def load_existing_study(storage: optuna.storages.RDBStorage, study_name: str | None) -> optuna.Study:
    """The named study, or the only study in the storage when no name is given."""
    try:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage=storage)]
    except Exception as e:  # a database of another program, or a damaged one
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"storage: cannot read the studies: {first}") from None
    if study_name is None:
        if len(names) != 1:
            listed = ", ".join(names) or "none"
            raise UserError(f"study_name: the storage holds {len(names)} studies ({listed}); name one")
        study_name = names[0]
    if study_name not in names:
        raise UserError(
            f"study_name: no study {study_name!r} in the storage; it has: {', '.join(names) or 'none'}"
        )
    return optuna.load_study(study_name=study_name, storage=storage)


def completed(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def trial_arch(trial: FrozenTrial) -> Arch:
    return arch_from_dict(trial.user_attrs["arch"])


def pareto_rows(study: optuna.Study) -> list[dict[str, Any]]:
    tested = study.user_attrs.get(TEST_ATTR, {})
    rows = []
    for t in sorted(study.best_trials, key=latency):
        rows.append(
            {
                "trial": t.number,
                "top1": round(top1(t), 2),
                "test_top1": round(tested[str(t.number)], 2) if str(t.number) in tested else None,
                "latency": round(latency(t), 4),
                "unit": t.user_attrs["latency"]["unit"],
                "latency_p90": round(t.user_attrs["latency"]["p90"], 4),
                "params": t.user_attrs["params"],
                "nonzero_params": t.user_attrs["nonzero_params"],
                "mflops": round(t.user_attrs["flops"] / 1e6, 2),
                "arch": t.user_attrs["summary"],
                "arch_key": t.user_attrs["arch_key"],
            }
            | _int8_columns(t)
        )
    return rows


def _int8_columns(trial: FrozenTrial) -> dict[str, Any]:
    """A trial's float and int8 validation top-1 side by side, where it has an int8 figure."""
    int8 = QuantizedAccuracy.from_dict(trial.user_attrs.get(TrialAttr.INT8))
    if int8 is None:
        return {}
    return {"float_top1": round(int8.float_top1, 2), "int8_top1": round(int8.top1, 2)}


def print_pareto(study: optuna.Study, console: Any) -> list[dict[str, Any]]:
    """The front as a table: validation top-1 (held out of the training data), the dataset's own
    test/val split top-1 where it was measured, latency and sizes."""
    rows = pareto_rows(study)
    unit = rows[0]["unit"] if rows else "ms"
    tested = any(r["test_top1"] is not None for r in rows)
    int8 = all("int8_top1" in r for r in rows) and bool(rows)
    table = Table(title=f"Pareto front of {study.study_name} ({len(rows)} of {len(completed(study))} trials)")
    columns = ["trial", "val top-1 %"] + (["float / int8 val top-1 %"] if int8 else [])
    columns += ["test top-1 %"] if tested else []
    for column in columns + [f"latency {unit}", "params", "nonzero", "MFLOPs", "architecture"]:
        table.add_column(column, justify="left" if column == "architecture" else "right")
    for r in rows:
        test = [f"{r['test_top1']:.2f}" if r["test_top1"] is not None else "-"] if tested else []
        both = [f"{r['float_top1']:.2f} / {r['int8_top1']:.2f}"] if int8 else []
        table.add_row(
            str(r["trial"]),
            f"{r['top1']:.2f}",
            *both,
            *test,
            f"{r['latency']:.4g}",
            f"{r['params']:,}",
            f"{r['nonzero_params']:,}",
            f"{r['mflops']:.2f}",
            r["arch"],
        )
    console.print(table)
    return rows


def write_pareto_files(
    study: optuna.Study, rows: list[dict[str, Any]], folder: Path
) -> tuple[Path, Path | None]:
    """``<study>_pareto.csv`` and ``<study>_pareto.png`` in ``folder`` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization.matplotlib import plot_pareto_front

    csv_path = write_csv(folder / f"{file_safe(study.study_name)}_pareto.csv", rows)
    png_path = folder / f"{file_safe(study.study_name)}_pareto.png"
    unit = rows[0]["unit"] if rows else "ms"
    names = {"accuracy": "validation top-1 (%)", "latency": f"latency ({unit})", "flops": "FLOPs"}
    objectives = study.user_attrs.get(STUDY_ATTR, {}).get("objectives", ["accuracy", "latency"])
    if len(objectives) > 3:  # optuna plots 2 or 3 objectives
        return csv_path, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        ax = plot_pareto_front(study, target_names=[names.get(o, o.replace("_", " ")) for o in objectives])
    ax.set_title(f"Pareto front of {study.study_name}")
    ax.figure.set_size_inches(8, 5.5)
    ax.figure.tight_layout()
    save_figure(ax.figure, png_path)
    return csv_path, png_path

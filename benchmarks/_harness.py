"""What the benchmark scripts share: the composed config and the objects built from it (through
the package: ``nas.config``, ``nas.search.setup.prepare``, ``nas.supernet_training``), result files that say
where, when and from which commit they came, paired statistics, and the environment of a real
``nas search`` subprocess. Run every script from the repository root as ``python -m
benchmarks.<name>``; nothing needs installing there beyond the dependencies.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


# --- configuration: the package's own composition and instantiation -----------------------------


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose --help shows the script's docstring and its ``python -m`` name."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    first, _, rest = doc.partition("\n")
    return argparse.ArgumentParser(
        prog=f"python -m {spec.name}" if spec is not None else None,
        description=first,
        epilog=rest.strip("\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_config_arguments(parser: argparse.ArgumentParser, example: str = "+space=vit") -> None:
    """Hydra overrides as positional arguments (as ``nas`` takes them) and ``--config-dir``."""
    parser.add_argument("overrides", nargs="*", help=f"config overrides as for nas, e.g. {example}")
    parser.add_argument("--config-dir", action="append", default=[], help="extra conf folder, as for nas")


def compose(overrides: list[str], config_dirs: list[str] = ()):
    """The config ``nas`` would run with these overrides."""
    from nas.config import compose as nas_compose

    return nas_compose(list(overrides), list(config_dirs))


def load_space(name: str, overrides: list[str] = (), config_dirs: list[str] = ()):
    """The space ``+space=name`` for the configured dataset's input (the embedded data's 1x28x28,
    10 classes unless ``overrides`` choose another)."""
    from nas.config import instantiate, instantiate_space

    cfg = compose([f"+space={name}", *overrides], config_dirs)
    data = instantiate("dataset", cfg.dataset).load()
    return instantiate_space(cfg.space, data, config_dirs)


def build_profiler(overrides: list[str], config_dirs: list[str] = ()):
    """The profiler of the composed config (``profiler=torch profiler.device=cuda`` ...)."""
    from nas.latency import build_profiler as nas_build_profiler

    return nas_build_profiler(compose(overrides, config_dirs).profiler)


def prepare(overrides: list[str], config_dirs: list[str] = ()):
    """The whole search setup (``nas.search.setup.Setup``) of ``nas search <overrides>``."""
    from nas.search.setup import prepare as nas_prepare

    return nas_prepare(compose(overrides, config_dirs), config_dirs)


def fresh_cache_dir(given: str | None = None) -> Path:
    """``given``, or a new temporary folder: a benchmark trains, it does not reuse a cached supernet."""
    return Path(given) if given else Path(tempfile.mkdtemp(prefix="nas-bench-"))


def train_supernet(setup, progress: bool = True):
    """``nas.supernet_training.train_supernet`` with the setup's space, data, split and recipe, exactly as
    ``nas search`` calls it (cache_dir, device and checkpoint interval from the config)."""
    from nas.supernet_training import train_supernet as nas_train_supernet

    cfg = setup.cfg
    return nas_train_supernet(
        setup.space,
        setup.space_config,
        setup.data,
        setup.train_idx,
        setup.val_idx,
        setup.split,
        setup.recipe,
        Path(cfg.cache_dir),
        device=cfg.device,
        checkpoint_every_s=cfg.checkpoint_every_s,
        progress=progress,
    )


# --- studies ---------------------------------------------------------------------------------


def finished_trials(storage: str, study_name: str) -> list:
    """The COMPLETE trials of an existing study, read as ``nas export`` reads (creates nothing)."""
    from nas.study import completed, load_existing_study, reading_storage

    with reading_storage(storage) as opened:
        return completed(load_existing_study(opened, study_name))


# --- result files ----------------------------------------------------------------------------


def git_commit() -> str | None:
    """$NAS_BENCH_COMMIT where set (a copied tree, e.g. on a lent GPU machine, has no git
    metadata or stale one), else HEAD of the repository with ``-dirty`` when tracked files differ
    from it; None where the tree is not a git checkout."""
    if os.environ.get("NAS_BENCH_COMMIT"):
        return os.environ["NAS_BENCH_COMMIT"]
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if changed else "")


def command_line() -> str:
    """The command that runs this process, as ``python -m benchmarks.<name> ...``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    program = f"python -m {spec.name}" if spec is not None else f"python {sys.argv[0]}"
    return " ".join([program, *map(shlex.quote, sys.argv[1:])])


def provenance() -> dict[str, Any]:
    """Where, when and from what a result came: machine fingerprint, commit, command, time."""
    from latency_models.hardware import fingerprint

    return {
        "hardware": fingerprint(),
        "commit": git_commit(),
        "command": command_line(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_result(path: str | Path | None, data: dict[str, Any], quiet: bool = False) -> Path | None:
    """Write ``data`` with its provenance as JSON to ``path`` (nothing when None)."""
    if path is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data | {"provenance": provenance()}, indent=1) + "\n")
    if not quiet:
        print(f"written to {path}", flush=True)
    return path


# --- paired statistics -----------------------------------------------------------------------


def paired_summary(errors: list[float]) -> dict[str, Any]:
    """Relative differences (a/b - 1) of paired figures: their size, and whether they lean, by
    the median's 95 % bootstrap interval and the two-sided sign test's p (no lean: the interval
    holds 0 and p is large)."""
    absolute = sorted(abs(e) for e in errors)
    rng = random.Random(0)
    boot = sorted(statistics.median(rng.choices(errors, k=len(errors))) for _ in range(2000))
    positive, n = sum(e > 0 for e in errors), sum(e != 0 for e in errors)
    tail = sum(math.comb(n, k) for k in range(min(positive, n - positive) + 1)) / 2**n
    return {
        "n": len(errors),
        "median_signed": round(statistics.median(errors), 4),
        "median_ci95": [round(boot[50], 4), round(boot[1949], 4)],
        "mean_signed": round(statistics.mean(errors), 4),
        "median_abs": round(statistics.median(absolute), 4),
        "p90_abs": round(absolute[int(0.9 * (len(absolute) - 1))], 4),
        "positive": round(positive / max(n, 1), 3),
        "sign_test_p": round(min(1.0, 2 * tail), 4),
    }


def leave_one_out(values: list[float]) -> list[float]:
    """Each value against the median of the others, minus 1: the spread of repeated figures."""
    return [v / statistics.median(values[:i] + values[i + 1 :]) - 1 for i, v in enumerate(values)]


def percent(summary: dict[str, Any]) -> str:
    """``-0.25 % [-0.82, +0.27], p 0.42`` from a paired_summary."""
    low, high = summary["median_ci95"]
    return (
        f"{100 * summary['median_signed']:+.2f} % [{100 * low:+.2f}, {100 * high:+.2f}], "
        f"p {summary['sign_test_p']:.3g}"
    )


# --- a real `nas search` in a subprocess -----------------------------------------------------


def search_env() -> dict[str, str]:
    """The environment of a ``nas`` subprocess: this repository importable (also where it is
    only copied, not installed) and Ray without token authentication."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return os.environ | {"PYTHONPATH": path, "RAY_AUTH_MODE": "disabled"}


def nas_command(*args: str) -> list[str]:
    """``python -m nas <args>`` with this interpreter."""
    return [sys.executable, "-m", "nas", *args]


def run_nas(args: list[str], cwd: Path, log: Path) -> float:
    """Run ``nas <args>`` in ``cwd`` with its output in ``log``; its wall time. Exits with the
    end of the log when the command fails."""
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(
            nas_command(*args), cwd=cwd, env=search_env(), stdout=out, stderr=subprocess.STDOUT
        ).returncode
    wall = time.perf_counter() - start
    if code != 0:
        sys.exit(f"nas {args[0]} failed (exit {code}); see {log}:\n{log.read_text()[-3000:]}")
    return wall


def run_nas_many(jobs: dict[str, list[str]], cwd: Path, logs: Path, parallel: int) -> dict[str, float]:
    """Run the ``nas`` commands of ``jobs`` (name -> args), at most ``parallel`` at once, each with
    its output in ``logs/<name>.log``; the wall time of each. Exits with the end of a failed
    command's log once the others have ended (they run on: their results are kept)."""
    from concurrent.futures import ThreadPoolExecutor

    logs.mkdir(parents=True, exist_ok=True)

    def timed(name: str, args: list[str]) -> tuple[float, int]:
        start = time.perf_counter()
        with open(logs / f"{name}.log", "w") as out:
            code = subprocess.run(
                nas_command(*args), cwd=cwd, env=search_env(), stdout=out, stderr=subprocess.STDOUT
            )
        return round(time.perf_counter() - start, 1), code.returncode

    with ThreadPoolExecutor(max(1, parallel)) as pool:
        done = dict(zip(jobs, pool.map(timed, jobs, jobs.values())))
    failed = [name for name, (_, code) in done.items() if code != 0]
    if failed:
        first = logs / f"{failed[0]}.log"
        sys.exit(f"nas failed for {', '.join(failed)}; see {first}:\n{first.read_text()[-3000:]}")
    return {name: wall for name, (wall, _) in done.items()}

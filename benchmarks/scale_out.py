"""Scale-out: correctness of K workers on one study, throughput against workers, and whether
latencies measured during a multi-worker search agree with the same architectures measured alone.

    python benchmarks/scale_out.py correctness --storage sqlite --workers 4 --trials 400
    python benchmarks/scale_out.py correctness --storage postgresql --workers 4 --trials 400
    python benchmarks/scale_out.py throughput --profiler flops --trials 80
    python benchmarks/scale_out.py throughput --profiler onnxruntime --trials 60
    python benchmarks/scale_out.py agreement --trials 60

Every run is a real `nas search +space=vit` (subprocess) with supernet.epochs=1 (accuracy is not
under test; the supernet is trained once and shared through --workdir's cache). Results go to
benchmarks/results/scale_out_<part>_*.json; the study databases stay in --workdir.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import optuna
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BASE = ["search", "+space=vit", "supernet.epochs=1", "progress=false"]
POSTGRES = os.environ.get("NAS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
LOCK_WORDS = ("database is locked", "deadlock", "could not serialize", "lock timeout", "LockNotAvailable")


def search(workdir: Path, overrides: list[str], log_name: str) -> float:
    """Runs one `nas search`; returns its wall time. Exits with the search's log on failure."""
    env = os.environ | {"PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    log = workdir / f"{log_name}.log"
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(
            [sys.executable, "-m", "nas", *BASE, f"cache_dir={workdir / 'cache'}", *overrides],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        ).returncode
    wall = time.perf_counter() - start
    if code != 0:
        sys.exit(f"search failed (exit {code}); see {log}:\n{log.read_text()[-3000:]}")
    return wall


def fresh_postgres() -> str:
    import sqlalchemy as sa

    from nas.study import normalise_url

    admin_url = normalise_url(POSTGRES)
    name = f"nas_scale_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def census(storage: str, study_name: str, log: Path) -> dict:
    """What the study holds: completed, lost, duplicated evaluations, lock errors, throughput."""
    trials = optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
    by_state = Counter(t.state.name for t in trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    scored = [t.user_attrs["arch_key"] for t in complete if "reused_from" not in t.user_attrs]
    reasons = [t.user_attrs.get("fail_reason", "") for t in trials if t.state == TrialState.FAIL]
    text = log.read_text()
    lock_errors = sum(any(w in r for w in LOCK_WORDS) for r in reasons)
    lock_errors += sum(text.count(w) for w in LOCK_WORDS)
    start = min(t.datetime_start for t in complete)
    end = max(t.datetime_complete for t in complete)
    span = (end - start).total_seconds()
    return {
        "trials": len(trials),
        "states": dict(by_state),
        "completed": len(complete),
        "lost": by_state.get("RUNNING", 0) + by_state.get("WAITING", 0),
        "evaluated": len(scored),
        "duplicated": len(scored) - len(set(scored)),
        "reused": len(complete) - len(scored),
        "surplus_pruned": sum(bool(t.user_attrs.get("surplus")) for t in trials),
        "failed": len(reasons),
        "fail_reasons": dict(Counter(r.split(":")[0] for r in reasons)),
        "lock_errors": lock_errors,
        "per_worker": dict(Counter(str(t.user_attrs.get("worker")) for t in complete)),
        "trial_span_s": round(span, 2),
        "trials_per_s": round(len(complete) / span, 4),
    }


def save(name: str, data: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"scale_out_{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, indent=2))
    print(f"written to {path.relative_to(REPO)}")


def machine() -> dict:
    from nas.hardware import fingerprint

    f = fingerprint()
    return {k: f.get(k) for k in ("cpu", "cpu_count", "torch", "onnxruntime") if k in f}


def correctness(args) -> None:
    """K workers x n trials: all completed, none lost, none evaluated twice, no lock errors."""
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.storage == "sqlite":
        storage = f"sqlite:///{workdir / f'correctness_{uuid.uuid4().hex[:6]}.db'}"
    else:
        storage = fresh_postgres()
    study = f"scale-{args.storage}"
    overrides = [f"storage={storage}", f"study_name={study}", f"n_trials={args.trials}"]
    overrides += [f"executor.n_workers={args.workers}", f"profiler={args.profiler}"]
    overrides += [f"sampler={args.sampler}"]
    if args.executor == "ray":
        overrides += ["executor=ray"]
    log_name = f"correctness_{args.storage}_{args.executor}"
    wall = search(workdir, overrides, log_name)
    result = census(storage, study, workdir / f"{log_name}.log")
    result |= {"storage": args.storage, "executor": args.executor, "workers": args.workers}
    result |= {"n_trials": args.trials, "profiler": args.profiler, "sampler": args.sampler}
    result["wall_s"] = round(wall, 1)
    save(f"correctness_{args.storage}_{args.executor}", result | {"machine": machine()})


def throughput(args) -> None:
    """Trials per second with 1, 2, ... workers on fresh studies (supernet already trained)."""
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{workdir / f'throughput_{uuid.uuid4().hex[:6]}.db'}"
    search(workdir, [f"storage={storage}", "study_name=warm", "n_trials=1"], "throughput_warm")  # supernet
    runs = {}
    for workers in args.worker_counts:
        study = f"tp-{args.profiler}-{workers}w"
        overrides = [f"storage={storage}", f"study_name={study}", f"n_trials={args.trials}"]
        overrides += [f"executor.n_workers={workers}", f"profiler={args.profiler}", *args.extra]
        wall = search(workdir, overrides, f"throughput_{args.profiler}_{workers}w")
        runs[workers] = census(storage, study, workdir / f"throughput_{args.profiler}_{workers}w.log")
        runs[workers]["wall_s"] = round(wall, 1)
    one = runs[args.worker_counts[0]]["trials_per_s"]
    for workers, run in runs.items():
        run["speedup"] = round(run["trials_per_s"] / one, 3)
        run["of_linear"] = round(run["speedup"] / (workers / args.worker_counts[0]), 3)
    save(f"throughput_{args.profiler}", {"profiler": args.profiler, "runs": runs, "machine": machine()})


def agreement(args) -> None:
    """Latencies measured during a K-worker ORT search against the same architectures measured
    again alone (twice, for the spread of a measurement with itself)."""
    from latency_models import create_profiler
    from nas.arch import arch_from_dict

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{workdir / f'agreement_{uuid.uuid4().hex[:6]}.db'}"
    study_name = f"agree-{args.workers}w"
    overrides = [f"storage={storage}", f"study_name={study_name}", f"n_trials={args.trials}"]
    overrides += [f"executor.n_workers={args.workers}", "profiler=onnxruntime", *args.extra]
    search(workdir, overrides, "agreement")
    study = optuna.load_study(study_name=study_name, storage=storage)
    measured = [
        t
        for t in study.get_trials(states=(TrialState.COMPLETE,))
        if t.user_attrs.get("latency_source") == "measured"
    ]
    settings = measured[0].user_attrs["profiler"]["settings"]
    profiler = create_profiler("onnxruntime", **settings)
    rows = []
    for i, t in enumerate(measured):
        arch = arch_from_dict(t.user_attrs["arch"])
        alone = [profiler.measure(arch).median for _ in range(2)]
        during = t.user_attrs["latency"]
        rows.append(
            {
                "trial": t.number,
                "worker": t.user_attrs["worker"],
                "during_ms": during["median"],
                "during_cv": during.get("cv"),
                "alone_ms": alone,
                "during_over_alone": during["median"] / alone[0] - 1,
                "alone_over_alone": alone[1] / alone[0] - 1,
            }
        )
        print(f"{i + 1}/{len(measured)} trial {t.number}: during {during['median']:.4f} ms, alone {alone}")

    def summary(key: str) -> dict:
        errors = sorted(abs(r[key]) for r in rows)
        return {
            "median_abs": round(statistics.median(errors), 4),
            "p90_abs": round(errors[int(0.9 * (len(errors) - 1))], 4),
            "max_abs": round(errors[-1], 4),
            "within_5pct": round(sum(e <= 0.05 for e in errors) / len(errors), 3),
            "mean_signed": round(statistics.mean(r[key] for r in rows), 4),
        }

    save(
        f"agreement_{args.workers}w",
        {
            "workers": args.workers,
            "n_measured": len(rows),
            "profiler_settings": settings,
            "during_vs_alone": summary("during_over_alone"),
            "alone_vs_alone": summary("alone_over_alone"),
            "median_cv_during": round(statistics.median(r["during_cv"] for r in rows if r["during_cv"]), 4),
            "rows": rows,
            "machine": machine(),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["correctness", "throughput", "agreement"])
    parser.add_argument("--workdir", default="/tmp/nas-scale-out")
    parser.add_argument("--storage", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--executor", choices=["local", "ray"], default="local")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--worker-counts", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--profiler", default="flops")
    parser.add_argument("--sampler", default="random")
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides, e.g. profiler.runs=50")
    args = parser.parse_args()
    {"correctness": correctness, "throughput": throughput, "agreement": agreement}[args.part](args)


if __name__ == "__main__":
    main()

"""Scale-out: correctness of K workers on one study, throughput against workers, and whether
latencies measured during a multi-worker search agree with the same architectures measured alone.

    python benchmarks/scale_out.py correctness --storage sqlite --workers 4 --trials 400
    python benchmarks/scale_out.py correctness --storage postgresql --workers 4 --trials 400
    python benchmarks/scale_out.py throughput --profiler flops --trials 80
    python benchmarks/scale_out.py throughput --profiler flops --trials 80 --tag 1thread \
        --extra executor.threads_per_worker=1
    python benchmarks/scale_out.py throughput --profiler onnxruntime --trials 60
    python benchmarks/scale_out.py agreement --workers 2 --trials 60 --chunk 10 --repeats 4
    python benchmarks/scale_out.py interference --workers 2 --archs 8 --repeats 8
    python benchmarks/scale_out.py recorded --workers 2 --max-seconds 900

Every run is a real `nas search +space=vit` (subprocess) with supernet.epochs=1 (accuracy is not
under test; the supernet is trained once and shared through --workdir's cache). Results go to
benchmarks/results/scale_out_<part>_*.json; the study databases stay in --workdir.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import random
import signal
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
sys.path.insert(0, str(REPO))  # nas, also where the repo is not installed (the GPU machine)
RESULTS = REPO / "benchmarks" / "results"
BASE = ["search", "+space=vit", "supernet.epochs=1", "progress=false"]
POSTGRES = os.environ.get("NAS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
LOCK_WORDS = ("database is locked", "deadlock", "could not serialize", "lock timeout", "LockNotAvailable")


def search_env() -> dict[str, str]:
    """The environment of a `nas search` subprocess: the repo importable, Ray without token auth."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return os.environ | {"PYTHONPATH": path, "RAY_AUTH_MODE": "disabled"}


def search(workdir: Path, overrides: list[str], log_name: str) -> float:
    """Runs one `nas search`; returns its wall time. Exits with the search's log on failure."""
    env = search_env()
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
    from latency_models.hardware import fingerprint

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
    run_id = uuid.uuid4().hex[:6]
    storage = f"sqlite:///{workdir / f'throughput_{run_id}_warm.db'}"
    search(workdir, [f"storage={storage}", "study_name=warm", "n_trials=1"], "throughput_warm")  # supernet
    runs = {}
    for workers in args.worker_counts:
        # A database each: its latency table starts empty, so every run measures all it reports.
        storage = f"sqlite:///{workdir / f'throughput_{run_id}_{workers}w.db'}"
        study = f"tp-{args.profiler}-{workers}w"
        overrides = [f"storage={storage}", f"study_name={study}", f"n_trials={args.trials}"]
        overrides += [f"executor.n_workers={workers}", f"profiler={args.profiler}", *args.extra]
        wall = search(workdir, overrides, f"throughput_{args.profiler}_{workers}w")
        runs[workers] = census(storage, study, workdir / f"throughput_{args.profiler}_{workers}w.log")
        runs[workers]["wall_s"] = round(wall, 1)
        trials = optuna.load_study(study_name=study, storage=storage).get_trials(
            states=(TrialState.COMPLETE,)
        )
        runs[workers]["latency_sources"] = dict(Counter(t.user_attrs["latency_source"] for t in trials))
    one = runs[args.worker_counts[0]]["trials_per_s"]
    for workers, run in runs.items():
        run["speedup"] = round(run["trials_per_s"] / one, 3)
        run["of_linear"] = round(run["speedup"] / (workers / args.worker_counts[0]), 3)
    tag = f"_{args.tag}" if args.tag else ""
    result = {"profiler": args.profiler, "overrides": args.extra, "runs": runs, "machine": machine()}
    save(f"throughput_{args.profiler}{tag}", result)


def agreement(args) -> None:
    """Latencies measured during a K-worker ORT search against the same architectures measured
    alone, ``--repeats`` times each, right after. This VM has speed phases of minutes in which
    the same model runs up to 1.7x slower (BENCHMARKS.md), so the search runs in chunks of
    ``--chunk`` trials (topping up the study) and each chunk is re-measured at once: during
    and alone then see the same phase. Agreement means a figure measured during the search is
    like one more measurement alone: no bias, and as close to the others as they are to each
    other (leave-one-out)."""
    from latency_models import create_profiler
    from search_spaces.arch import arch_from_dict

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{workdir / f'agreement_{uuid.uuid4().hex[:6]}.db'}"
    study_name = f"agree-{args.workers}w"
    rows, seen, profiler, settings = [], set(), None, None
    for n_trials in range(args.chunk, args.trials + 1, args.chunk):
        overrides = [f"storage={storage}", f"study_name={study_name}", f"n_trials={n_trials}"]
        overrides += [f"executor.n_workers={args.workers}", "profiler=onnxruntime", *args.extra]
        search(workdir, overrides, "agreement")
        study = optuna.load_study(study_name=study_name, storage=storage)
        chunk = [
            t
            for t in study.get_trials(states=(TrialState.COMPLETE,))
            if t.user_attrs.get("latency_source") == "measured" and t.number not in seen
        ]
        if profiler is None:
            settings = chunk[0].user_attrs["profiler"]["settings"]
            profiler = create_profiler("onnxruntime", **settings)
        archs = {t.number: arch_from_dict(t.user_attrs["arch"]) for t in chunk}
        alone: dict[int, list[float]] = {t.number: [] for t in chunk}
        for _ in range(args.repeats):  # passes over the chunk: each repeat at another moment
            for t in chunk:
                alone[t.number].append(profiler.measure(archs[t.number]).median)
        for t in chunk:
            seen.add(t.number)
            during = t.user_attrs["latency"]
            ms = alone[t.number]
            reference = statistics.median(ms)
            loo = [m / statistics.median(ms[:i] + ms[i + 1 :]) - 1 for i, m in enumerate(ms)]
            rows.append(
                {
                    "trial": t.number,
                    "worker": t.user_attrs["worker"],
                    "during_ms": during["median"],
                    "during_cv": during.get("cv"),
                    "alone_ms": ms,
                    "during_over_alone": during["median"] / reference - 1,
                    "alone_over_others": loo,
                    "during_rank": sum(m < during["median"] for m in ms),  # 0..repeats
                }
            )
        print(f"{len(rows)} architectures measured during the search and {args.repeats}x alone")

    ranks = Counter(r["during_rank"] for r in rows)
    save(
        f"agreement_{args.workers}w{f'_{args.tag}' if args.tag else ''}",
        {
            "workers": args.workers,
            "n_measured": len(rows),
            "repeats_alone": args.repeats,
            "chunk": args.chunk,
            "profiler_settings": settings,
            "during_vs_alone_median": summary([r["during_over_alone"] for r in rows]),
            "alone_vs_other_alone": summary([e for r in rows for e in r["alone_over_others"]]),
            "during_rank_among_alone": {str(k): ranks.get(k, 0) for k in range(args.repeats + 1)},
            "during_within_alone_range": round(
                sum(min(r["alone_ms"]) <= r["during_ms"] <= max(r["alone_ms"]) for r in rows) / len(rows), 3
            ),
            "median_cv_during": round(statistics.median(r["during_cv"] for r in rows if r["during_cv"]), 4),
            "rows": rows,
            "machine": machine(),
        },
    )


def all_stopped(group: int) -> bool:
    """Whether every thread of every process in process group ``group`` is stopped (state T)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != group:  # fields after the name: state ppid pgrp
                continue
            states = [
                (task / "stat").read_text().rsplit(")", 1)[1].split()[0] for task in (proc / "task").iterdir()
            ]
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
        if any(state not in "tTZX" for state in states):
            return False
    return True


def summary(errors: list[float]) -> dict:
    """Size of the differences, and whether they lean: the median's 95 % bootstrap interval
    and the two-sided sign test's p (no lean: the interval holds 0 and p is large)."""
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


class Background:
    """A ``nas search`` (``--workers`` workers, ``profiler``) run in the background, in its own
    process group, that can be stopped and continued as a whole."""

    def __init__(self, args, name: str, profiler: str) -> None:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.storage = f"sqlite:///{workdir / f'{name}_{uuid.uuid4().hex[:6]}.db'}"
        self.study_name = f"background-{args.workers}w"
        overrides = [f"storage={self.storage}", f"study_name={self.study_name}", "n_trials=1000000"]
        overrides += ["heartbeat_s=60", f"executor.n_workers={args.workers}", f"profiler={profiler}"]
        self.log = open(workdir / f"{name}_background.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nas", *BASE, f"cache_dir={workdir / 'cache'}", "sampler=random"]
            + [*overrides, *args.extra],
            cwd=workdir,
            env=search_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the driver and its workers together
        )

    def study(self):
        return optuna.load_study(study_name=self.study_name, storage=self.storage)

    def completed(self) -> int:
        try:
            study = self.study()
        except KeyError:
            return 0
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def wait_for(self, n: int) -> None:
        """Until ``n`` trials completed (the supernet is trained and the workers run)."""
        while self.completed() < n:
            if self.process.poll() is not None:
                sys.exit(f"background search ended (exit {self.process.returncode}); see {self.log.name}")
            time.sleep(2)

    def signal(self, sig: int) -> None:
        """SIGSTOP / SIGCONT the whole search. Sent while this process holds the lock, so no
        worker holds it; the lock is kept until every thread of the group has stopped, so none
        is woken to take it between the signal and the stop (which left a stopped worker holding
        the lock in a first try)."""
        from latency_models.lock import measuring

        with measuring():
            os.killpg(self.process.pid, sig)
            deadline = time.monotonic() + 30
            while sig == signal.SIGSTOP and not all_stopped(self.process.pid):
                if time.monotonic() > deadline:
                    sys.exit("background search did not stop within 30 s")
                time.sleep(0.01)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.log.close()


def interference(args) -> None:
    """Does a K-worker search running beside a measurement change the figure? A background
    ``nas search`` (``--profiler``, flops by default: its workers compute without pause) runs
    while this process measures ``--archs`` of its architectures with the ONNX Runtime profiler
    in three conditions, interleaved in rotating order so that the machine's slow drift falls on
    all three alike: ``search`` (the workers run; the machine-wide lock keeps them out of the
    measurement), ``alone`` (the workers are stopped with SIGSTOP, taken while this process holds
    the lock, so none holds it) and ``no_lock`` (the workers run and the lock is switched off:
    the control that shows what the lock prevents). Agreement: search/alone is centred on 0 and
    within the spread of alone measurements among themselves."""
    from omegaconf import OmegaConf

    from latency_models import create_profiler
    from search_spaces.arch import arch_from_dict

    if "alone" not in args.conditions or not set(args.conditions) <= {"search", "alone", "no_lock"}:
        sys.exit("--conditions: alone and any of search, no_lock")
    background = Background(args, "interference", args.profiler)
    completed = background.completed
    try:
        background.wait_for(max(args.archs, 2 * args.workers))
        trials = background.study().get_trials(states=(TrialState.COMPLETE,))
        chosen = sorted(trials[: args.archs], key=lambda t: t.user_attrs["flops"])
        archs = [arch_from_dict(t.user_attrs["arch"]) for t in chosen]
        settings = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "profiler" / "onnxruntime.yaml"))
        settings = {k: v for k, v in settings.items() if k not in ("_target_", "name")}
        profiler = create_profiler("onnxruntime", **settings)
        conditions = tuple(args.conditions)
        orders = [list(o) for o in itertools.permutations(conditions)]
        random.Random(0).shuffle(orders)
        medians = {c: [[] for _ in archs] for c in conditions}
        loads = {c: [] for c in conditions}

        def measure_in(condition: str, arch):
            if condition == "alone":
                background.signal(signal.SIGSTOP)
            if condition == "no_lock":
                os.environ["NAS_NO_MEASURE_LOCK"] = "1"
            try:
                return profiler.measure(arch)
            finally:
                os.environ.pop("NAS_NO_MEASURE_LOCK", None)
                if condition == "alone":
                    background.signal(signal.SIGCONT)

        step, first, deadline = 0, completed(), time.monotonic() + args.max_seconds
        for repeat in range(args.repeats):
            if repeat and time.monotonic() > deadline:
                args.repeats = repeat
                break
            for i, arch in enumerate(archs):  # the conditions back to back, in rotating order
                for condition in orders[step % len(orders)]:
                    result = measure_in(condition, arch)
                    medians[condition][i].append(result.median)
                    loads[condition].append(result.background_load)
                step += 1
            print(f"round {repeat + 1}/{args.repeats}; background trials: {completed() - first}", flush=True)
        background_trials = completed() - first
    finally:
        background.kill()

    def ratios(condition: str) -> list[float]:  # per architecture: its median in condition / alone
        return [
            statistics.median(medians[condition][i]) / statistics.median(medians["alone"][i]) - 1
            for i in range(len(archs))
        ]

    def paired(condition: str) -> list[float]:  # each measurement against alone's, taken next to it
        return [
            m / a - 1 for i in range(len(archs)) for m, a in zip(medians[condition][i], medians["alone"][i])
        ]

    alone_spread = [  # leave-one-out: one alone measurement against the median of the others
        m / statistics.median(ms[:j] + ms[j + 1 :]) - 1 for ms in medians["alone"] for j, m in enumerate(ms)
    ]

    others = [c for c in conditions if c != "alone"]
    save(
        f"interference_{args.workers}w{f'_{args.tag}' if args.tag else ''}",
        {
            "workers": args.workers,
            "background_profiler": args.profiler,
            "archs": len(archs),
            "repeats": args.repeats,
            "profiler_settings": settings,
            **{f"{c}_vs_alone_paired": summary(paired(c)) for c in others},
            **{f"{c}_vs_alone_per_arch": summary(ratios(c)) for c in others},
            "alone_vs_other_alone": summary(alone_spread),
            "background_trials_completed": background_trials,
            "median_background_load": {c: round(statistics.median(v), 3) for c, v in loads.items()},
            "per_arch": [
                {
                    "summary": arch.summary(),
                    "flops": t.user_attrs["flops"],
                    **{f"{c}_ms": [round(m, 5) for m in medians[c][i]] for c in conditions},
                }
                for i, (arch, t) in enumerate(zip(archs, chosen))
            ],
            "machine": machine(),
        },
    )


def recorded(args) -> None:
    """The latencies a K-worker ONNX Runtime search records, against the same architectures
    measured alone seconds later. This process watches the study (its reads under the shared
    lock, as a worker's); for the newest measured trial it stops the whole search (SIGSTOP, see
    Background.signal) and measures that architecture alone twice, then lets the search go on.
    Alone, the model is the one the worker measured: extracted from the study's supernet, with
    its weights. Agreement: recorded/alone is centred on 0 and as close as the two alone figures
    are to each other. Every trial is a new architecture (random sampler, a space of ~10^16), so
    each one is measured, none read from the latency table."""
    import torch
    from hydra.utils import instantiate

    from latency_models import create_profiler
    from latency_models.lock import computing
    from nas.study import STUDY_ATTR
    from search_spaces.arch import arch_from_dict

    background = Background(args, "recorded", "onnxruntime")
    rows, seen, profiler = [], set(), None
    try:
        background.wait_for(1)
        study = background.study()
        deadline = time.monotonic() + args.max_seconds
        while time.monotonic() < deadline:
            with computing():  # polling is computation too: never beside a worker's measurement
                fresh = [
                    t
                    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if t.number not in seen and t.user_attrs.get("latency_source") == "measured"
                ]
            seen.update(t.number for t in fresh)
            if not fresh:
                time.sleep(0.2)
                continue
            trial = max(fresh, key=lambda t: t.datetime_complete)  # the newest: the least time apart
            arch = arch_from_dict(trial.user_attrs["arch"])
            if profiler is None:  # as nas export rebuilds the supernet
                profiler = create_profiler("onnxruntime", **trial.user_attrs["profiler"]["settings"])
                info = study.user_attrs[STUDY_ATTR]
                sizes = {k: getattr(arch, k) for k in ("image_size", "in_channels", "num_classes")}
                with computing():
                    supernet = instantiate(info["space"], **sizes).make_supernet()
                    checkpoint = torch.load(info["supernet_path"], map_location="cpu", weights_only=False)
                    supernet.load_state_dict(checkpoint["model"])
            with computing():
                model = supernet.extract(arch)
            background.signal(signal.SIGSTOP)
            try:
                gap = (datetime.datetime.now() - trial.datetime_complete).total_seconds()
                first, second = (profiler.measure(arch, model).median for _ in range(2))
            finally:
                background.signal(signal.SIGCONT)
            during = trial.user_attrs["latency"]
            rows.append(
                {
                    "trial": trial.number,
                    "worker": trial.user_attrs["worker"],
                    "recorded_ms": during["median"],
                    "recorded_background_load": during.get("background_load"),
                    "alone_ms": [first, second],
                    "seconds_after": round(gap, 2),
                }
            )
            if len(rows) % 10 == 0:
                print(f"{len(rows)} recorded latencies measured again alone", flush=True)
    finally:
        background.kill()

    save(
        f"recorded_{args.workers}w{f'_{args.tag}' if args.tag else ''}",
        {
            "workers": args.workers,
            "n": len(rows),
            "profiler_settings": profiler.settings() if profiler else None,
            "recorded_vs_alone": summary([r["recorded_ms"] / r["alone_ms"][0] - 1 for r in rows]),
            "alone_vs_alone": summary([r["alone_ms"][1] / r["alone_ms"][0] - 1 for r in rows]),
            "median_seconds_after": statistics.median(r["seconds_after"] for r in rows),
            "median_recorded_background_load": statistics.median(
                r["recorded_background_load"] or 0.0 for r in rows
            ),
            "rows": rows,
            "machine": machine(),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = {"correctness": correctness, "throughput": throughput, "agreement": agreement}
    parts |= {"interference": interference, "recorded": recorded}
    parser.add_argument("part", choices=list(parts))
    parser.add_argument("--workdir", default="/tmp/nas-scale-out")
    parser.add_argument("--storage", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--executor", choices=["local", "ray"], default="local")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--worker-counts", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--profiler", default="flops")
    parser.add_argument("--sampler", default="random")
    parser.add_argument("--tag", default="", help="suffix of the result file's name")
    parser.add_argument("--chunk", type=int, default=10, help="agreement: trials per search run")
    parser.add_argument("--repeats", type=int, default=4, help="agreement, interference: per arch")
    parser.add_argument("--archs", type=int, default=8, help="interference: architectures measured")
    parser.add_argument("--max-seconds", type=float, default=1e9, help="interference, recorded: stop past it")
    parser.add_argument(
        "--conditions",
        nargs="+",
        default=["search", "alone", "no_lock"],
        help="interference: what to compare",
    )
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides, e.g. profiler.runs=50")
    args = parser.parse_args()
    parts[args.part](args)


if __name__ == "__main__":
    main()
